package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"
)

// The hops section measures what one relay process costs on this
// machine, with no Pico in the path: the direct upstream, a TCP relay
// that copies bytes both ways (io.Copy, two goroutines per connection)
// and Go's own HTTP reverse proxy (httputil.ReverseProxy) in front of the
// same upstream. Pico's single-node path has two processes in it (node
// and agent); these rows are the yardstick for what a process in the path
// costs here at all.

const (
	hopDirect = "direct"
	hopTCP    = "TCP relay (io.Copy both ways)"
	hopHTTP   = "HTTP reverse proxy (httputil.ReverseProxy)"
)

var hopPaths = []string{hopDirect, hopTCP, hopHTTP}

type hopRow struct {
	Path       string
	P50One     float64 // µs, 1 connection
	RPS        float64 // at the headline concurrency
	RelayCPUus float64 // relay process CPU per request at the headline concurrency
}

type hopsResult struct {
	Connections int
	Rows        []hopRow
}

// serveRelay runs one relay ("tcp,LISTEN,TARGET" or "http,LISTEN,TARGET")
// until the process ends: the --serve-relay mode of pico-bench.
func serveRelay(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 3 || (f[0] != "tcp" && f[0] != "http") {
		return fmt.Errorf("--serve-relay: %q is not tcp|http,LISTEN,TARGET", spec)
	}
	kind, listen, target := f[0], f[1], f[2]
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if kind == "http" {
		u := &url.URL{Scheme: "http", Host: target}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
		return http.Serve(ln, rp)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			t, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer t.Close()
			go func() { _, _ = io.Copy(t, c); _ = t.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(c, t)
		}()
	}
}

func (e *env) runHops() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ip := e.o.addrs.memory
	relays := map[string]string{hopTCP: ip + ":18080", hopHTTP: ip + ":18081"}
	kinds := map[string]string{hopTCP: "tcp", hopHTTP: "http"}
	procs := map[string]*proc{}
	for path, addr := range relays {
		kind := kinds[path]
		p, err := startProc(self, e.tmp, "relay-"+kind, "--serve-relay", kind+","+addr+","+e.upstream)
		if err != nil {
			return err
		}
		defer p.stop()
		procs[path] = p
		if _, err := waitStatus("http://"+addr, "", 10*time.Second); err != nil {
			return fmt.Errorf("%s never answered: %w", path, err)
		}
	}
	res := &hopsResult{Connections: e.o.connections}
	for _, path := range hopPaths {
		u := "http://" + e.upstream + "/"
		if addr, ok := relays[path]; ok {
			u = "http://" + addr + "/"
		}
		e.logf("  wrk %-42s -c 1 and -c %d", path, e.o.connections)
		one, err := e.wrk.run(u, "", 1, e.o.sweepDuration)
		if err != nil {
			return fmt.Errorf("%s at 1 connection: %w", path, err)
		}
		row := hopRow{Path: path, P50One: one.P50}
		var before time.Duration
		if p := procs[path]; p != nil {
			before, _ = procCPU(p.pid())
		}
		many, err := e.wrk.run(u, "", e.o.connections, e.o.sweepDuration)
		if err != nil {
			return fmt.Errorf("%s at %d connections: %w", path, e.o.connections, err)
		}
		row.RPS = many.RPS
		if p := procs[path]; p != nil && many.Requests > 0 {
			after, _ := procCPU(p.pid())
			row.RelayCPUus = float64((after - before).Microseconds()) / float64(many.Requests)
		}
		res.Rows = append(res.Rows, row)
	}
	e.rep.Hops = res
	return nil
}

func (r *report) hopsTable() *table {
	h := r.Hops
	t := &table{
		title:  "6. What one relay process costs on this machine (no Pico): 1 KiB GET",
		header: []string{"path", "p50 at 1 connection", "added to direct", fmt.Sprintf("req/s at %d connections", h.Connections), "relay CPU per request"},
	}
	var direct float64
	for _, row := range h.Rows {
		if row.Path == hopDirect {
			direct = row.P50One
		}
	}
	for _, row := range h.Rows {
		added, cpu := "", ""
		if row.Path != hopDirect {
			added = fmt.Sprintf("%.0f µs", row.P50One-direct)
			cpu = fmt.Sprintf("%.0f µs", row.RelayCPUus)
		}
		t.add(row.Path, fmt.Sprintf("%.0f µs", row.P50One), added, rps(row.RPS), cpu)
	}
	return t
}
