// Package upstream is the server side of the upstream port: it accepts
// agents' WebSocket connections (`/pico/v1/upstream/{endpoint}` and Piko's
// `/piko/v1/upstream/{endpoint}`), runs a yamux server session over each
// and keeps the registry of which sessions serve which endpoint.
//
// The registry picks sessions round robin, records pending registrations
// (a registration becomes visible before the agent sees the 101 answer, so
// the proxy never reports "no upstream" for an endpoint whose agent was
// just told it is registered), reports changes with per-endpoint upstream
// counts, enforces the per-connection stream limit, keeps idle streams
// for HTTP keep-alive (pool.go), checks sessions the proxy suspects of
// having stopped answering with a ping (liveness.go), and drains: on
// shutdown it refuses new agents, sends yamux GoAway on every session,
// removes the sessions from routing and closes each one as soon as its
// last proxied stream has finished.
package upstream
