package testutil

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// LogBuffer is a goroutine-safe log sink: hand it to a logger, read what
// was logged. The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Reset forgets everything logged so far.
func (b *LogBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// Lines returns the non-empty lines logged so far, without line ends.
func (b *LogBuffer) Lines() []string {
	var lines []string
	for line := range strings.Lines(b.String()) {
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// Line returns the first line containing every one of subs, or "".
func (b *LogBuffer) Line(subs ...string) string {
	for _, line := range b.Lines() {
		if containsAll(line, subs) {
			return line
		}
	}
	return ""
}

// Count returns how many lines contain every one of subs.
func (b *LogBuffer) Count(subs ...string) int {
	n := 0
	for _, line := range b.Lines() {
		if containsAll(line, subs) {
			n++
		}
	}
	return n
}

// Records decodes the JSON lines (slog's JSON handler) whose msg is msg.
func (b *LogBuffer) Records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range b.Lines() {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
