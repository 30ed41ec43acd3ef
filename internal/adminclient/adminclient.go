// Package adminclient is the client of a Pico server's admin API behind
// `pico status`: it fetches the status routes and prints them as aligned
// tables or as indented JSON for scripts.
package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
)

// maxAnswer bounds the size of an answer read from the admin API.
const maxAnswer = 64 << 20

// Client queries one server's admin API.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// Option customises a Client.
type Option func(*Client)

// WithHTTPClient sends the requests with hc (e.g. one trusting a private
// CA, see tlsconfig.HTTPClient); its Timeout is replaced by New's.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithToken sends token as "Authorization: Bearer <token>" (admin.auth).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// New returns a client of the admin API at baseURL (for example
// "http://localhost:8002"); timeout bounds each request.
func New(baseURL string, timeout time.Duration, opts ...Option) *Client {
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), http: &http.Client{}}
	for _, opt := range opts {
		opt(c)
	}
	hc := *c.http
	hc.Timeout = timeout
	c.http = &hc
	return c
}

// Get returns the JSON answer of the admin API route path.
func (c *Client) Get(ctx context.Context, path string) (json.RawMessage, error) {
	target := c.base + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("admin API request %s: %w", target, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s (is a Pico server running there? set --server.url): %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", target, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("admin API %s answered %d: %s; the server requires a token (admin.auth): set --connect.token or --connect.token-file", target, resp.StatusCode, errorMessage(body))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin API %s answered %d: %s", target, resp.StatusCode, errorMessage(body))
	}
	if !json.Valid(body) {
		return nil, fmt.Errorf("admin API %s answered something other than JSON (is --server.url the admin port, 8002?)", target)
	}
	return body, nil
}

func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if msg := strings.TrimSpace(string(body)); msg != "" {
		return msg
	}
	return "(empty answer)"
}

// getInto decodes the answer of path into v.
func (c *Client) getInto(ctx context.Context, path string, v any) error {
	raw, err := c.Get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("admin API %s%s: unexpected answer: %w", c.base, path, err)
	}
	return nil
}

// Nodes returns every member the server knows, including itself.
func (c *Client) Nodes(ctx context.Context) ([]adminapi.NodeSummary, error) {
	var nodes []adminapi.NodeSummary
	return nodes, c.getInto(ctx, adminapi.NodesPath, &nodes)
}

// Node returns one member with its endpoints.
func (c *Client) Node(ctx context.Context, id string) (adminapi.NodeDetail, error) {
	var node adminapi.NodeDetail
	return node, c.getInto(ctx, adminapi.NodePath(id), &node)
}

// Endpoints returns the server's endpoints with their local upstream
// counts.
func (c *Client) Endpoints(ctx context.Context) (map[string]int, error) {
	var endpoints map[string]int
	return endpoints, c.getInto(ctx, adminapi.EndpointsPath, &endpoints)
}

// WriteJSON writes an admin API answer indented, for scripts.
func WriteJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("formatting JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// WriteNodes writes the members as a table sorted by ID. SHARE is an
// active member's upstream connections as a percentage of the fair share
// (the active members' connections divided by their number), what
// cluster.rebalance evens out.
func WriteNodes(w io.Writer, nodes []adminapi.NodeSummary) error {
	if len(nodes) == 0 {
		_, err := fmt.Fprintln(w, "no cluster members")
		return err
	}
	sorted := append([]adminapi.NodeSummary(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	total, active := 0, 0
	for _, n := range sorted {
		if n.Status == adminapi.StatusActive {
			total += n.Upstreams
			active++
		}
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSTATUS\tPROXY ADDR\tUPSTREAM ADDR\tADMIN ADDR\tUPSTREAMS\tENDPOINTS\tSHARE")
	for _, n := range sorted {
		share := "-"
		if n.Status == adminapi.StatusActive && total > 0 {
			share = fmt.Sprintf("%.0f%%", 100*float64(n.Upstreams)*float64(active)/float64(total))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", n.ID, n.Status, orDash(n.ProxyAddr), orDash(n.UpstreamAddr), orDash(n.AdminAddr), n.Upstreams, n.Endpoints, share)
	}
	return tw.Flush()
}

// WriteNode writes one member's fields, then its endpoints as a table.
func WriteNode(w io.Writer, n adminapi.NodeDetail) error {
	tw := newTable(w)
	for _, row := range [][2]string{
		{"ID", n.ID}, {"Status", n.Status},
		{"Proxy addr", n.ProxyAddr}, {"Upstream addr", n.UpstreamAddr},
		{"Admin addr", n.AdminAddr}, {"Gossip addr", n.GossipAddr},
		{"Upstreams", fmt.Sprint(n.Upstreams)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], orDash(row[1]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return WriteEndpoints(w, n.Endpoints)
}

// WriteEndpoints writes endpoints and their upstream counts as a table
// sorted by endpoint.
func WriteEndpoints(w io.Writer, endpoints map[string]int) error {
	if len(endpoints) == 0 {
		_, err := fmt.Fprintln(w, "no endpoints with a connected upstream")
		return err
	}
	ids := make([]string, 0, len(endpoints))
	for id := range endpoints {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	tw := newTable(w)
	fmt.Fprintln(tw, "ENDPOINT\tUPSTREAMS")
	for _, id := range ids {
		fmt.Fprintf(tw, "%s\t%d\n", id, endpoints[id])
	}
	return tw.Flush()
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ErrUnknownQuery is returned by Query for arguments it does not know.
var ErrUnknownQuery = errors.New("unknown query: use 'cluster nodes [ID]' or 'upstream endpoints'")

// Query answers `pico status ARGS...` on w in the given output format
// ("text" or "json").
func (c *Client) Query(ctx context.Context, args []string, output string, w io.Writer) error {
	var path string
	var render func(raw json.RawMessage) error
	switch {
	case len(args) == 2 && args[0] == "cluster" && args[1] == "nodes":
		path = adminapi.NodesPath
		render = func(raw json.RawMessage) error { return renderAs(raw, w, WriteNodes) }
	case len(args) == 3 && args[0] == "cluster" && args[1] == "nodes":
		path = adminapi.NodePath(args[2])
		render = func(raw json.RawMessage) error { return renderAs(raw, w, WriteNode) }
	case len(args) == 2 && args[0] == "upstream" && args[1] == "endpoints":
		path = adminapi.EndpointsPath
		render = func(raw json.RawMessage) error { return renderAs(raw, w, WriteEndpoints) }
	default:
		return ErrUnknownQuery
	}
	raw, err := c.Get(ctx, path)
	if err != nil {
		return err
	}
	if output == "json" {
		return WriteJSON(w, raw)
	}
	if err := render(raw); err != nil {
		return fmt.Errorf("admin API %s%s: %w", c.base, path, err)
	}
	return nil
}

// renderAs decodes raw as T and writes it with write.
func renderAs[T any](raw json.RawMessage, w io.Writer, write func(io.Writer, T) error) error {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	return write(w, v)
}
