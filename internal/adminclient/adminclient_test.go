package adminclient

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
)

const nodesJSON = `[
 {"id":"pico-1-b2","status":"active","proxy_addr":"10.0.0.2:8000","admin_addr":"10.0.0.2:8002","upstream_addr":"10.0.0.2:8001","gossip_addr":"10.0.0.2:8003","upstreams":12,"endpoints":3},
 {"id":"pico-0-a1","status":"leaving","proxy_addr":"10.0.0.1:8000","admin_addr":"10.0.0.1:8002","upstream_addr":"","gossip_addr":"10.0.0.1:8003","upstreams":0,"endpoints":0}
]`

const nodeJSON = `{"id":"pico-1-b2","status":"active","proxy_addr":"10.0.0.2:8000","admin_addr":"10.0.0.2:8002","upstream_addr":"10.0.0.2:8001","gossip_addr":"10.0.0.2:8003","upstreams":3,"endpoints":{"web":2,"db":1}}`

const endpointsJSON = `{"my-endpoint":2,"api":1,"a-very-long-endpoint-name":10}`

func adminServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status/cluster/nodes", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(nodesJSON)) })
	mux.HandleFunc("GET /status/cluster/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "pico-1-b2" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"no node \"` + r.PathValue("id") + `\""}`))
			return
		}
		w.Write([]byte(nodeJSON))
	})
	mux.HandleFunc("GET /status/upstream/endpoints", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(endpointsJSON)) })
	mux.HandleFunc("GET /html/status/upstream/endpoints", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func query(t *testing.T, base, output string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := New(base, 5*time.Second).Query(context.Background(), args, output, &out)
	return out.String(), err
}

func TestWriteNodesShowsTheShareOfTheFairShare(t *testing.T) {
	// 30 connections over 3 active members: fair share 10. The leaving
	// member is not counted.
	var out bytes.Buffer
	require.NoError(t, WriteNodes(&out, []adminapi.NodeSummary{
		{NodeInfo: adminapi.NodeInfo{ID: "a", Status: adminapi.StatusActive, Upstreams: 14}},
		{NodeInfo: adminapi.NodeInfo{ID: "b", Status: adminapi.StatusActive, Upstreams: 12}},
		{NodeInfo: adminapi.NodeInfo{ID: "c", Status: adminapi.StatusActive, Upstreams: 4}},
		{NodeInfo: adminapi.NodeInfo{ID: "d", Status: adminapi.StatusLeaving, Upstreams: 7}},
	}))
	var shares []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		f := strings.Fields(line)
		shares = append(shares, f[len(f)-1])
	}
	require.Equal(t, []string{"140%", "120%", "40%", "-"}, shares)
}

func TestTables(t *testing.T) {
	srv := adminServer(t)
	out, err := query(t, srv.URL, "text", "cluster", "nodes")
	require.NoError(t, err)
	require.Equal(t, ""+
		"ID          STATUS    PROXY ADDR      UPSTREAM ADDR   ADMIN ADDR      UPSTREAMS   ENDPOINTS   SHARE\n"+
		"pico-0-a1   leaving   10.0.0.1:8000   -               10.0.0.1:8002   0           0           -\n"+
		"pico-1-b2   active    10.0.0.2:8000   10.0.0.2:8001   10.0.0.2:8002   12          3           100%\n", out)

	out, err = query(t, srv.URL+"/", "text", "upstream", "endpoints")
	require.NoError(t, err)
	require.Equal(t, ""+
		"ENDPOINT                    UPSTREAMS\n"+
		"a-very-long-endpoint-name   10\n"+
		"api                         1\n"+
		"my-endpoint                 2\n", out)

	out, err = query(t, srv.URL, "text", "cluster", "nodes", "pico-1-b2")
	require.NoError(t, err)
	require.Equal(t, ""+
		"ID:              pico-1-b2\n"+
		"Status:          active\n"+
		"Proxy addr:      10.0.0.2:8000\n"+
		"Upstream addr:   10.0.0.2:8001\n"+
		"Admin addr:      10.0.0.2:8002\n"+
		"Gossip addr:     10.0.0.2:8003\n"+
		"Upstreams:       3\n"+
		"\n"+
		"ENDPOINT   UPSTREAMS\n"+
		"db         1\n"+
		"web        2\n", out)
}

func TestJSONOutputIsTheAPIAnswer(t *testing.T) {
	srv := adminServer(t)
	for args, want := range map[[3]string]string{
		{"cluster", "nodes"}:              nodesJSON,
		{"cluster", "nodes", "pico-1-b2"}: nodeJSON,
		{"upstream", "endpoints"}:         endpointsJSON,
	} {
		list := args[:2]
		if args[2] != "" {
			list = args[:]
		}
		out, err := query(t, srv.URL, "json", list...)
		require.NoError(t, err)
		require.JSONEq(t, want, out)
		require.Contains(t, out, "\n  ", "indented")
	}
}

func TestEmptyAnswers(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, WriteEndpoints(&out, map[string]int{}))
	require.NoError(t, WriteNodes(&out, nil))
	require.Equal(t, "no endpoints with a connected upstream\nno cluster members\n", out.String())
}

func TestErrorsAreClear(t *testing.T) {
	srv := adminServer(t)
	_, err := query(t, srv.URL, "text", "cluster", "nodes", "nope")
	require.ErrorContains(t, err, `answered 404: no node "nope"`)

	_, err = query(t, srv.URL+"/html", "text", "upstream", "endpoints")
	require.ErrorContains(t, err, "something other than JSON")

	_, err = query(t, srv.URL, "text", "cluster", "endpoints")
	require.ErrorIs(t, err, ErrUnknownQuery)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + l.Addr().String()
	l.Close()
	_, err = query(t, closed, "text", "upstream", "endpoints")
	require.ErrorContains(t, err, "cannot reach the admin API at "+closed)
	require.ErrorContains(t, err, "--server.url")
}

func TestTypedGetters(t *testing.T) {
	srv := adminServer(t)
	c := New(srv.URL, 5*time.Second)
	nodes, err := c.Nodes(context.Background())
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	node, err := c.Node(context.Background(), "pico-1-b2")
	require.NoError(t, err)
	require.Equal(t, map[string]int{"web": 2, "db": 1}, node.Endpoints)
	endpoints, err := c.Endpoints(context.Background())
	require.NoError(t, err)
	require.Equal(t, 10, endpoints["a-very-long-endpoint-name"])
}
