package protocol

import (
	"encoding/json"
	"net/http"
)

// ErrorBody is the JSON body of every error Pico answers over HTTP:
// {"error": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
}

// WriteError answers status with the JSON error body {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(ErrorBody{Error: msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
