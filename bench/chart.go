package main

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// pathColors are the chart colours of the compared paths.
var pathColors = map[string]color.Color{
	pathDirect: color.RGBA{R: 0x44, G: 0x44, B: 0x44, A: 0xff},
	pathSingle: color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	pathCross:  color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// writeChart renders the concurrency sweep: throughput (left) and p50 and
// p99 latency (right) against connections, direct vs through Pico.
func (r *report) writeChart(path string) error {
	levels := r.Sweep.Levels
	if len(levels) == 0 {
		return fmt.Errorf("no sweep results to chart")
	}
	var ticks []plot.Tick
	for _, l := range levels {
		ticks = append(ticks, plot.Tick{Value: float64(l.Connections), Label: fmt.Sprint(l.Connections)})
	}
	newPlot := func(title, yLabel string) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "concurrent connections (wrk -c)"
		p.Y.Label.Text = yLabel
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		return p
	}
	series := func(p *plot.Plot, name, label string, value func(wrkResult) float64, dashed bool) error {
		xys := make(plotter.XYs, len(levels))
		for i, l := range levels {
			xys[i] = plotter.XY{X: float64(l.Connections), Y: value(l.Results[name])}
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		line.Color, points.Color = pathColors[name], pathColors[name]
		line.Width = vg.Points(1.5)
		if dashed {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(line, points)
		p.Legend.Add(label, line, points)
		return nil
	}

	tp := newPlot(fmt.Sprintf("Throughput, 1 KiB GET (%s per run)", r.Sweep.Duration), "requests/s")
	tp.Y.Min = 0
	lat := newPlot("Latency: p50 (solid), p99 (dashed)", "milliseconds (log)")
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	lat.Legend.Left = true
	for _, name := range paths {
		if err := series(tp, name, name, func(x wrkResult) float64 { return x.RPS }, false); err != nil {
			return err
		}
		if err := series(lat, name, name+" p50", func(x wrkResult) float64 { return x.P50 / 1000 }, false); err != nil {
			return err
		}
		if err := series(lat, name, name+" p99", func(x wrkResult) float64 { return x.P99 / 1000 }, true); err != nil {
			return err
		}
	}

	img := vgimg.New(vg.Points(960), vg.Points(400))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(24), PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	plots := [][]*plot.Plot{{tp, lat}}
	canvases := plot.Align(plots, tiles, dc)
	tp.Draw(canvases[0][0])
	lat.Draw(canvases[0][1])

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
