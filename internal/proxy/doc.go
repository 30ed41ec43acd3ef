// Package proxy is the proxy port's HTTP handler. It finds the endpoint a
// request is for (x-pico-endpoint / x-piko-endpoint header, else the first
// label of Host), and routes it:
//
//   - to a local upstream: over a yamux stream of the agent's session,
//     on which the request is written as HTTP/1.1 and the response read
//     back, both bodies streamed, with proxy.gateway_timeout bounding the
//     wait for the response head (504 after it). Streams are kept alive
//     for further requests as HTTP/1.1 connections are (the agent serves
//     each stream with an HTTP/1.1 server; a "Connection: close" answer
//     or Options.OneRequestPerStream ends a stream after one request);
//   - else to another node that has an upstream (at most one hop), over
//     pooled keep-alive connections to its proxy port, signed through the
//     Router so the receiving node can tell a member's forward from a
//     forged one;
//   - else, after a short bounded wait for an upstream to appear, 502.
//
// A response head slower than Options.SuspectAfter has its far end
// checked: an agent's session is pinged (upstream.Session.Suspect), and a
// request waiting on another node stops waiting, and may be retried,
// once the Router reports that node failed (Gone).
//
// Both legs use the same exchange code, run by the request's own
// goroutine: no transport goroutines, pooled buffers, no copies beyond
// the body copy to the client.
//
// WebSocket upgrades pass through, and GET /_pico/v1/tcp/{endpoint}
// (or /_piko/...) is a WebSocket whose byte stream is piped to a TCP
// endpoint's upstream (or one whose protocol is unknown: Piko's agents do
// not say). Retries happen only when they are safe: when a
// stream or connection could not be opened, before any byte reached an
// upstream (or, for requests without a body and with an idempotent method,
// when the upstream connection failed before any response byte arrived).
// Every request gives one access-log line and is counted in the metrics.
// All errors are JSON {"error": "..."}.
//
// The edges are strict, since clients and agents are not trusted: a
// client's chunked or HTTP/1.0 request closes its connection after the
// answer (framing that may be read differently, RFC 9112 6.1) and a broken
// request body gets 400 and the connection closed, so no byte after it is
// read as a request; a response head larger than
// Options.MaxResponseHeaderBytes, or preceded by more than
// httpwire.MaxInformationalResponses 1xx answers, gets 502; and the TCP
// route refuses an endpoint whose agent registered it as HTTP.
package proxy
