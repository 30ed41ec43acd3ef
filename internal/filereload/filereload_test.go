package filereload

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// concat parses files by joining them; empty content (a write in
// progress) and content starting with "bad" fail.
func concat(contents [][]byte) (string, error) {
	parts := make([]string, len(contents))
	for i, c := range contents {
		if len(c) == 0 || strings.HasPrefix(string(c), "bad") {
			return "", errors.New("bad content")
		}
		parts[i] = string(c)
	}
	return strings.Join(parts, "+"), nil
}

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func TestReloadsWhenContentChanges(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "a1")
	write(t, b, "b1")
	v, err := New([]string{a, b}, 10*time.Millisecond, concat, nil)
	require.NoError(t, err)
	require.Equal(t, "a1+b1", v.Get())

	write(t, b, "b2")
	require.Eventually(t, func() bool { return v.Get() == "a1+b2" }, 5*time.Second, 5*time.Millisecond)

	// Content that fails to parse, or a file that vanished, keeps the
	// previous value; the next good content replaces it.
	write(t, a, "bad")
	require.Never(t, func() bool { return v.Get() != "a1+b2" }, 100*time.Millisecond, 10*time.Millisecond)
	require.NoError(t, os.Remove(a))
	require.Never(t, func() bool { return v.Get() != "a1+b2" }, 100*time.Millisecond, 10*time.Millisecond)
	write(t, a, "a3")
	require.Eventually(t, func() bool { return v.Get() == "a3+b2" }, 5*time.Second, 5*time.Millisecond)
}

// Kubernetes updates a mounted Secret by pointing the ..data symlink at a
// new directory; the files themselves are symlinks through ..data.
func TestFollowsKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for gen, content := range map[string]string{"gen1": "one", "gen2": "two"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, gen), 0o700))
		write(t, filepath.Join(dir, gen, "tls.crt"), content)
	}
	require.NoError(t, os.Symlink("gen1", filepath.Join(dir, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "tls.crt"), filepath.Join(dir, "tls.crt")))

	v, err := New([]string{filepath.Join(dir, "tls.crt")}, 10*time.Millisecond, concat, nil)
	require.NoError(t, err)
	require.Equal(t, "one", v.Get())

	// Atomic swap: a new symlink renamed over the old one.
	require.NoError(t, os.Symlink("gen2", filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	require.Eventually(t, func() bool { return v.Get() == "two" }, 5*time.Second, 5*time.Millisecond)
}

func TestNewReportsWhichFileFailed(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	write(t, a, "a")
	_, err := New([]string{a, filepath.Join(dir, "missing")}, 0, concat, nil)
	var re *ReadError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 1, re.Index)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Contains(t, err.Error(), "missing")

	write(t, a, "bad")
	_, err = New([]string{a}, 0, concat, nil)
	require.EqualError(t, err, "bad content")
}

func TestConcurrentGet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "v0")
	v, err := New([]string{path}, time.Millisecond, concat, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if got := v.Get(); !strings.HasPrefix(got, "v") {
					t.Errorf("Get returned %q", got)
					return
				}
			}
		})
	}
	for i := range 20 {
		write(t, path, "v"+string(rune('a'+i)))
	}
	wg.Wait()
}
