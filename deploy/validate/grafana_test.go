package validate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestComposeGrafanaProvisioning: the provisioned datasources serve every dashboard of deploy/grafana — each
// datasource template variable asks for a provisioned type, and each datasource a panel or query names is such a
// variable or a provisioned UID — and the dashboard provider reads the directory compose mounts them at.
func TestComposeGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"datasources"`
	}
	readYAML(t, "deploy/compose/grafana/provisioning/datasources/tracepipe.yml", &ds)
	var types, uids []string
	for _, d := range ds.Datasources {
		types, uids = append(types, d.Type), append(uids, d.UID)
		if d.URL != "http://prometheus:9090" && d.URL != "http://elasticsearch:9200" {
			t.Errorf("datasource %s: URL %s is no compose service", d.Name, d.URL)
		}
	}
	var dp struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Type    string `json:"type"`
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, "deploy/compose/grafana/provisioning/dashboards/tracepipe.yml", &dp)
	if ds.APIVersion != 1 || dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("provisioning files: want apiVersion 1 and one file provider")
	}
	mounted := false
	for _, v := range loadCompose(t).Services["grafana"].Volumes {
		mounted = mounted || (v.Target == dp.Providers[0].Options.Path && filepath.Base(v.Source) == "grafana")
	}
	if !mounted {
		t.Errorf("the dashboard provider reads %s, where compose does not mount deploy/grafana", dp.Providers[0].Options.Path)
	}

	files, _ := filepath.Glob(filepath.Join(repo, "deploy/grafana/*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards in deploy/grafana")
	}
	variable := regexp.MustCompile(`^\$\{?(\w+)\}?$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		dsVars := map[string]bool{}
		for _, v := range dash.Templating.List {
			if v.Type != "datasource" {
				continue
			}
			dsVars[v.Name] = true
			if q, _ := v.Query.(string); !slices.Contains(types, q) {
				t.Errorf("%s: datasource variable %s wants type %v; provisioned: %v", filepath.Base(f), v.Name, v.Query, types)
			}
		}
		var doc any
		_ = json.Unmarshal(b, &doc)
		walkDatasources(doc, func(uid string) {
			if m := variable.FindStringSubmatch(uid); m != nil {
				if !dsVars[m[1]] {
					t.Errorf("%s: datasource %s is no datasource variable of the dashboard", filepath.Base(f), uid)
				}
			} else if !slices.Contains(uids, uid) && uid != "-- Grafana --" && uid != "grafana" {
				t.Errorf("%s: datasource UID %s is not provisioned (%v)", filepath.Base(f), uid, uids)
			}
		})
	}
}

// walkDatasources calls f with the uid of every "datasource": {"uid": ...} (or "datasource": "uid") in v.
func walkDatasources(v any, f func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if k == "datasource" {
				switch d := c.(type) {
				case map[string]any:
					if uid, ok := d["uid"].(string); ok {
						f(uid)
					}
				case string:
					f(d)
				}
				continue
			}
			walkDatasources(c, f)
		}
	case []any:
		for _, c := range x {
			walkDatasources(c, f)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
