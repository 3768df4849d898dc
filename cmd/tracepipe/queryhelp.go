package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/query"
)

// checkResolution explains an empty rollup or edge answer at a resolution
// the aggregator does not write by default (a usage error), instead of
// "no rollups in range".
func checkResolution(res time.Duration) error {
	return query.UnwrittenResolution(res, aggregator.DefaultConfig().Stats.Normalized().Resolutions())
}

// hint tells, on the command's error output, when an Elasticsearch query
// found nothing because no tracepipe index exists under --index-prefix,
// naming the prefixes that do exist. It is best effort: any failure to
// list the indices is silent.
func (c *queryCmd) hint(ctx context.Context) {
	if len(c.store.ESURLs) == 0 {
		return
	}
	prefixes, err := indexPrefixes(ctx, c.store.ESURLs[0])
	if err != nil {
		return
	}
	for _, p := range prefixes {
		if p == c.store.IndexPrefix {
			return
		}
	}
	quoted := make([]string, len(prefixes))
	for i, p := range prefixes {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	found := "none"
	if len(quoted) > 0 {
		found = strings.Join(quoted, ", ")
	}
	fmt.Fprintf(c.fs.Output(), "hint: no tracepipe indices under --index-prefix %q at %s; prefixes with tracepipe indices: %s\n", c.store.IndexPrefix, strings.Join(c.store.ESURLs, ","), found)
}

// indexPrefixes lists the index prefixes ("" for none) that have tracepipe
// trace-summary or Jaeger span indices.
func indexPrefixes(ctx context.Context, esURL string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := strings.TrimRight(esURL, "/") + "/_cat/indices/" + url.PathEscape("*tracepipe-traces-*,*jaeger-span-*") + "?format=json&h=index&expand_wildcards=open"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list indices: %s", resp.Status)
	}
	var rows []struct {
		Index string `json:"index"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&rows); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, r := range rows {
		for _, marker := range []string{"tracepipe-traces-", "jaeger-span-"} {
			if i := strings.Index(r.Index, marker); i >= 0 {
				seen[strings.TrimSuffix(r.Index[:i], "-")] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// confirmInput is where confirm reads the answer; a terminal is required
// unless a test replaces it.
var confirmInput = func() (io.Reader, bool) { return os.Stdin, isTerminal(os.Stdin) }

// confirm asks question on w and reads y/yes; without a terminal it refuses.
func confirm(w io.Writer, question string) error {
	in, tty := confirmInput()
	if !tty {
		return fmt.Errorf("%w: refusing to delete without confirmation: pass --yes (or --dry-run to see what would be deleted)", errUsage)
	}
	fmt.Fprintf(w, "%s [y/N] ", question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed; nothing deleted")
}
