package kafka

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOnlyImporterOfKafkaGo (issue 10): outside tests, only this package
// imports a Kafka client; the exceptions are examples/ (a user's
// application) and internal/kafkatest (a test helper).
func TestOnlyImporterOfKafkaGo(t *testing.T) {
	root := filepath.Join("..", "..")
	allowed := []string{"pipeline/kafka/", "examples/", "internal/kafkatest/"}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		for _, a := range allowed {
			if strings.HasPrefix(rel, a) {
				return nil
			}
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/segmentio/kafka-go") || strings.HasPrefix(p, "github.com/twmb/franz-go/pkg/kgo") {
				t.Errorf("%s imports %s: reach Kafka through pipeline/kafka", rel, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
