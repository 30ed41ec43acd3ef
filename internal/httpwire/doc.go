// Package httpwire holds the HTTP/1.1 wire helpers shared by the two
// ends of a tunnel: the server's proxy, which writes a client's request
// onto an upstream stream and reads the answer, and the agent, which
// reads that request from the stream, sends it to its local service and
// writes the answer back.
//
// Both ends speak HTTP/1.1 over connections they manage themselves
// (yamux streams, pooled TCP connections) rather than through
// net/http's Transport and Server, which would add goroutines, copies
// and flushes to every request. The parsing is still net/http's
// (http.ReadRequest, http.ReadResponse); this package writes heads and
// bodies, removes hop-by-hop headers and pools the buffers.
package httpwire
