package config

import (
	"bytes"
	"fmt"
	"os"
)

// SyncDoc keeps the flag table of one binary in a Markdown file true: the
// text between the lines "<!-- flags: name -->" and "<!-- end flags: name
// -->" must equal body (Markdown(fs) of the binary's FlagSet). With update
// it rewrites that text instead; without, it reports a difference, or a
// missing block, as an error saying how to update. Each binary's test
// calls it for its own block (docs/configuration.md).
func SyncDoc(path, name, body string, update bool) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin, end := []byte("<!-- flags: "+name+" -->\n"), []byte("<!-- end flags: "+name+" -->")
	i := bytes.Index(doc, begin)
	j := bytes.Index(doc, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no block %q…%q: add the two lines, then run the test with -update", path, begin, end)
	}
	i += len(begin)
	if string(doc[i:j]) == body {
		return nil
	}
	if !update {
		return fmt.Errorf("%s: the flags of %s changed; run `go test -run TestConfigurationDoc -update` in its package and review the diff", path, name)
	}
	out := append(append(append([]byte{}, doc[:i]...), body...), doc[j:]...)
	return os.WriteFile(path, out, 0o644)
}
