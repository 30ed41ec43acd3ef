package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testGossipKey is a key of n bytes whose content depends on seed.
func testGossipKey(seed byte, n int) []byte {
	key := make([]byte, n)
	for i := range key {
		key[i] = seed + byte(i*7)
	}
	return key
}

func b64(key []byte) string { return base64.StdEncoding.EncodeToString(key) }

func TestLoadGossipKeys(t *testing.T) {
	k1, k2 := testGossipKey(1, 32), testGossipKey(2, 24)
	// A key whose base64 starts with "/" is a key, not a missing path.
	slashKey := append([]byte{0xfc}, testGossipKey(3, 31)...)
	require.True(t, strings.HasPrefix(b64(slashKey), "/"))

	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}
	oneKey := write("one.key", b64(k1)+"\n")
	twoKeys := write("two.keys", "# rotation in progress\n"+b64(k2)+"\n"+b64(k1)+"  # the old key\n")
	badFile := write("bad.key", "not-base64!")
	emptyFile := write("empty.key", "\n# nothing yet\n")

	tests := []struct {
		name     string
		value    string
		wantKeys [][]byte
		wantFile string
		wantErr  string
	}{
		{"empty disables encryption", "", nil, "", ""},
		{"AES-128", b64(k1[:16]), [][]byte{k1[:16]}, "", ""},
		{"AES-192", b64(k1[:24]), [][]byte{k1[:24]}, "", ""},
		{"AES-256", b64(k1), [][]byte{k1}, "", ""},
		{"surrounding blanks", " " + b64(k1) + "\n", [][]byte{k1}, "", ""},
		{"key starting with a slash", b64(slashKey), [][]byte{slashKey}, "", ""},
		{"file with one key", oneKey, [][]byte{k1}, oneKey, ""},
		{"file with two keys, primary first", twoKeys, [][]byte{k2, k1}, twoKeys, ""},
		{"wrong length", b64(k1[:20]), nil, "", "gossip.secret_key (--gossip.secret-key): the value decodes to 20 bytes; an AES key is 16, 24 or 32 bytes"},
		{"not base64", "hunter2!", nil, "", "gossip.secret_key (--gossip.secret-key): the value is not base64; generate one with"},
		{"several inline keys", b64(k1) + "," + b64(k2), nil, "", "gossip.secret_key (--gossip.secret-key): the value holds a comma or a blank; an inline value is exactly one key, so put several keys one per line in a key file"},
		{"several inline lines", b64(k1[:24]) + "\n" + b64(k2), nil, "", "the value holds a comma or a blank"},
		{"file that is not base64", badFile, nil, "", "gossip.secret_key (--gossip.secret-key): file " + badFile + " line 1 is not base64"},
		{"file without a key", emptyFile, nil, "", "file " + emptyFile + " holds no key; put a base64 key on its first line"},
		{"missing file", "/etc/pico/no-such-gossip.key", nil, "", "file /etc/pico/no-such-gossip.key does not exist"},
		{"missing file with a blank", "/etc/pico/no such/gossip.key", nil, "", "file /etc/pico/no such/gossip.key does not exist"},
		{"directory", dir, nil, "", "is not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadGossipKeys(tc.value)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				requireNoKeyIn(t, err.Error(), k1, k2)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantKeys, got.Keys)
			require.Equal(t, tc.wantFile, got.File)
		})
	}
}

func TestParseGossipKeyFile(t *testing.T) {
	k16, k24, k32 := testGossipKey(1, 16), testGossipKey(2, 24), testGossipKey(3, 32)
	tests := []struct {
		name    string
		content string
		want    [][]byte
		wantErr []string // every message must appear
	}{
		{"one key", b64(k32), [][]byte{k32}, nil},
		{"one key and a newline", b64(k32) + "\n", [][]byte{k32}, nil},
		{"keys of every size in file order", b64(k24) + "\n" + b64(k16) + "\n" + b64(k32) + "\n", [][]byte{k24, k16, k32}, nil},
		{"comments, blank lines, indentation", "# pico gossip keys\n\n  " + b64(k16) + "\t# new, primary\n\n#" + b64(k32) + "\n" + b64(k24) + "#old\n", [][]byte{k16, k24}, nil},
		{"Windows line ends", b64(k16) + "\r\n" + b64(k32) + "\r\n", [][]byte{k16, k32}, nil},
		{"empty", "", nil, []string{"gossip.secret_key (--gossip.secret-key): file keys holds no key; put a base64 key on its first line (generate one with `head -c 32 /dev/urandom | base64`)"}},
		{"only comments", "# add the key here\n\n", nil, []string{"file keys holds no key"}},
		{"not base64", "# header\n" + b64(k16) + "\nnot-a-key!\n", nil, []string{"gossip.secret_key (--gossip.secret-key): file keys line 3 is not base64; generate one with `head -c 32 /dev/urandom | base64`"}},
		{"wrong length", b64(k16) + "\n" + b64(k32[:20]) + "\n", nil, []string{"gossip.secret_key (--gossip.secret-key): file keys line 2 decodes to 20 bytes; an AES key is 16, 24 or 32 bytes (generate one with"}},
		{"two keys on one line", b64(k16) + " " + b64(k32) + "\n", nil, []string{"file keys line 1 holds more than one word; put one base64 key per line (comments start with #)"}},
		{"comma-separated keys", b64(k16) + "," + b64(k32) + "\n", nil, []string{"file keys line 1 is not base64"}},
		{"repeated key", b64(k16) + "\n\n" + b64(k16) + "\n", nil, []string{"file keys line 3 repeats the key of line 1; list each key once"}},
		{"every problem at once", "x\n" + b64(k16) + "\n" + b64(k32[:5]) + "\n" + b64(k16) + "\n", nil, []string{"line 1 is not base64", "line 3 decodes to 5 bytes", "line 4 repeats the key of line 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseGossipKeyFile("keys", []byte(tc.content))
			if tc.wantErr != nil {
				require.Error(t, err)
				for _, want := range tc.wantErr {
					require.ErrorContains(t, err, want)
				}
				require.Equal(t, len(tc.wantErr), strings.Count(err.Error(), "gossip.secret_key ("), "one line per problem: %v", err)
				require.Nil(t, keys)
				requireNoKeyIn(t, err.Error(), k16, k24, k32)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, keys)
		})
	}
}

// requireNoKeyIn fails if msg shows any of keys in base64.
func requireNoKeyIn(t *testing.T, msg string, keys ...[]byte) {
	t.Helper()
	for _, k := range keys {
		for _, n := range []int{16, 24, 32} {
			if n <= len(k) {
				require.NotContains(t, msg, strings.TrimRight(b64(k[:n]), "="))
			}
		}
	}
}

// FuzzParseGossipKeyFile: any file content either gives a usable key set
// (at least one key, each 16, 24 or 32 bytes, none twice, which written
// back one per line parses to the same set) or an error that names the
// setting and shows no key of the file.
func FuzzParseGossipKeyFile(f *testing.F) {
	k16, k32 := b64(testGossipKey(1, 16)), b64(testGossipKey(2, 32))
	for _, seed := range []string{
		"",
		"\n",
		"# comment\n",
		k32,
		k32 + "\n" + k16 + "\n",
		"# new\n" + k16 + " # primary\n\n" + k32 + "\r\n",
		k16 + "\n" + k16,
		k16 + " " + k32,
		k16 + "," + k32,
		"aGVsbG8=\n",
		"====\n",
		"#" + k16,
		"\xff\xfe" + k16,
		k32[:20] + "\n" + k32[20:],
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseGossipKeyFile("/etc/pico/gossip/key", data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "gossip.secret_key (--gossip.secret-key): file /etc/pico/gossip/key ") {
				t.Fatalf("error does not name the setting and file: %q", msg)
			}
			for field := range strings.FieldsFuncSeq(string(data), func(r rune) bool { return strings.ContainsRune(" \t\r\n#,", r) }) {
				if key, problem := decodeGossipKey(field); problem == "" && strings.Contains(msg, b64(key)) {
					t.Fatalf("error %q shows a key of the file", msg)
				}
			}
			return
		}
		if len(keys) == 0 {
			t.Fatalf("no error and no key for %q", data)
		}
		var lines []string
		for i, k := range keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				t.Fatalf("key %d is %d bytes", i, n)
			}
			if indexKey(keys[:i], k) >= 0 {
				t.Fatalf("key %d repeats an earlier one", i)
			}
			lines = append(lines, b64(k))
		}
		again, err := ParseGossipKeyFile("again", []byte(strings.Join(lines, "\n")))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("keys written back do not parse the same: %v", err)
		}
		for i := range keys {
			if string(again[i]) != string(keys[i]) {
				t.Fatalf("key %d differs after writing back", i)
			}
		}
	})
}
