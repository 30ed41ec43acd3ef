// Package initcontainer renders the server.yaml that Pico's Kubernetes init
// container writes for the server container of the same pod.
//
// The rendered file is an optional base YAML file, kept key for key and in
// its order (comments and values such as "${POD_NAME}" included, since the
// server expands the environment when it reads the file), with two keys
// set from what the peer finder discovered:
//
//	cluster:
//	  node_id_prefix: "<pod>-"
//	  join:
//	    - <other peer>...
//	    - <service FQDN>
//
// The pod name only prefixes the node ID: the server appends a fresh
// suffix at every start, so a restarted container that re-uses the file
// still joins under a new ID. The service's own name ends the join list so
// that the server can resolve it again later and find pods that started
// after this one.
//
// Rendering is deterministic: the same base and the same peers, in any
// order, give byte-identical output. WriteFileAtomic replaces the output
// file atomically, so a reader never sees a half-written file. Bootstrap
// is the whole init container: settle the options, wait in DNS, render
// and write.
package initcontainer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pico-proxy/pico/peerfinder"
)

// Params are the discovered facts that go into server.yaml.
type Params struct {
	// PodName is this pod's name, a DNS label such as "pico-1".
	PodName string
	// ServiceFQDN is the headless service's fully qualified name.
	ServiceFQDN string
	// Peers are the names (or addresses) of the other peers, this pod
	// excluded, in any order.
	Peers []string
}

// NodeIDPrefix is the value of cluster.node_id_prefix: the pod name and a dash.
func (p Params) NodeIDPrefix() string { return p.PodName + "-" }

// Join is the value of cluster.join: the peers, normalized, without
// duplicates and sorted, followed by the service's name.
func (p Params) Join() []string {
	service := normalize(p.ServiceFQDN)
	join := make([]string, 0, len(p.Peers)+1)
	for _, peer := range p.Peers {
		if peer = normalize(peer); peer != service {
			join = append(join, peer)
		}
	}
	slices.Sort(join)
	return append(slices.Compact(join), service)
}

// Validate reports the first parameter that cannot go into server.yaml.
func (p Params) Validate() error {
	if err := peerfinder.ValidateLabel(p.PodName); err != nil {
		return fmt.Errorf("pod name: %w", err)
	}
	if err := peerfinder.ValidateName(p.ServiceFQDN); err != nil {
		return fmt.Errorf("service name: %w", err)
	}
	for _, peer := range p.Peers {
		if err := peerfinder.ValidateHost(normalize(peer)); err != nil {
			return fmt.Errorf("peer: %w", err)
		}
	}
	return nil
}

func normalize(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// Render returns base (YAML; empty means none) with cluster.node_id_prefix
// and cluster.join set from p. Every other key of base is kept as it was.
// Errors are one line and name the problem.
func Render(base []byte, p Params) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := parseBase(base)
	if err != nil {
		return nil, err
	}
	return b.render(p)
}

// base is a parsed base file that can take the discovered keys: one
// mapping at the top, with a "cluster" mapping in it and no node_id.
type base struct {
	doc     *yaml.Node
	cluster *yaml.Node
}

// render sets cluster.node_id_prefix and cluster.join from p (already
// validated) and encodes the document. It changes b: render once.
func (b *base) render(p Params) ([]byte, error) {
	set(b.cluster, "node_id_prefix", &yaml.Node{
		Kind:  yaml.ScalarNode,
		Tag:   "!!str",
		Style: yaml.DoubleQuotedStyle,
		Value: p.NodeIDPrefix(),
	})
	join := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, host := range p.Join() {
		join.Content = append(join.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: host})
	}
	set(b.cluster, "join", join)

	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(b.doc); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return out.Bytes(), nil
}

// parseBase parses data (empty means none) and checks that it can take
// the discovered keys.
func parseBase(data []byte) (*base, error) {
	doc, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	cluster, err := clusterMapping(doc.Content[0])
	if err != nil {
		return nil, err
	}
	if key, _ := lookup(cluster, "node_id"); key != nil {
		return nil, fmt.Errorf("cluster.node_id is set (line %d), which would give the pod the same node ID at every restart; remove it, bootstrap sets cluster.node_id_prefix instead", key.Line)
	}
	return &base{doc: doc, cluster: cluster}, nil
}

// parseDocument parses base into a document whose content is one mapping.
func parseDocument(base []byte) (doc *yaml.Node, err error) {
	// The YAML library panics on a few malformed inputs; report those as
	// invalid YAML rather than crash the init container.
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(base))
	doc = &yaml.Node{}
	if err := dec.Decode(doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, fmt.Errorf("invalid YAML: holds several documents (a second one starts at line %d), want one", extra.Line)
	}
	if doc.Kind == 0 { // empty, or only comments
		return &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}, nil
	}
	// Decoding into a generic value catches what parsing alone accepts,
	// such as duplicate keys, which the server would reject later.
	var value any
	if err := doc.Decode(&value); err != nil {
		return nil, yamlError(err)
	}
	root := doc.Content[0]
	switch {
	case isNull(root):
		*root = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: root.HeadComment, LineComment: root.LineComment, FootComment: root.FootComment}
	case root.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("the top level must be a mapping of keys, not %s (line %d)", describe(root), root.Line)
	}
	spellOutEmptyNulls(root, false)
	root.Style &^= yaml.FlowStyle // a block mapping can hold the new block values
	return doc, nil
}

// spellOutEmptyNulls writes the empty nulls that the YAML library would
// write back as an empty quoted string (changing their meaning) as "null":
// those inside flow collections ("{a: }", "{a}") and those used as keys.
func spellOutEmptyNulls(n *yaml.Node, inFlow bool) {
	inFlow = inFlow || n.Style&yaml.FlowStyle != 0
	for i, c := range n.Content {
		isKey := n.Kind == yaml.MappingNode && i%2 == 0
		if (inFlow || isKey) && isNull(c) && c.Value == "" {
			c.Value = "null"
		}
		spellOutEmptyNulls(c, inFlow)
	}
}

// clusterMapping returns the mapping under the top-level key "cluster",
// creating it when missing or empty.
func clusterMapping(root *yaml.Node) (*yaml.Node, error) {
	key, value := lookup(root, "cluster")
	switch {
	case key == nil:
		value = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		set(root, "cluster", value)
	case isNull(value):
		*value = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: value.HeadComment, LineComment: value.LineComment, FootComment: value.FootComment}
	case value.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("cluster must be a mapping of keys, not %s (line %d)", describe(value), key.Line)
	}
	value.Style &^= yaml.FlowStyle
	return value, nil
}

// lookup returns the key and value nodes of key in mapping m, or nils.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return k, m.Content[i+1]
		}
	}
	return nil, nil
}

// set gives key the value in mapping m: in place, keeping the old value's
// comments, when the key exists; appended at the end otherwise.
func set(m *yaml.Node, key string, value *yaml.Node) {
	if _, old := lookup(m, key); old != nil {
		value.HeadComment, value.LineComment, value.FootComment = old.HeadComment, old.LineComment, old.FootComment
		*old = *value
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, value)
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	default:
		return "something else"
	}
}

// yamlError makes a YAML library error one line, keeping it wrapped.
func yamlError(err error) error {
	return &invalidYAMLError{err: err}
}

type invalidYAMLError struct{ err error }

func (e *invalidYAMLError) Error() string {
	msg := strings.Join(strings.Fields(e.err.Error()), " ")
	msg = strings.Replace(msg, "yaml: unmarshal errors: ", "", 1)
	return "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
}

func (e *invalidYAMLError) Unwrap() error { return e.err }

// WriteFileAtomic writes data to path through a temporary file in the same
// directory that is flushed to disk and then renamed over path, so readers
// see either the old content or the new, never a part. The directory is
// synced too, so the rename survives a crash.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: cannot create a file in %s: %w", path, dir, unwrapPath(err))
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, unwrapPath(err))
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// unwrapPath drops the temporary file's name from a path error: the caller
// names the paths that mean something to the user.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
