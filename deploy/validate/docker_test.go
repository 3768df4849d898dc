package validate

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerfileStage is one FROM ... of a Dockerfile and the instructions under it (continuation lines joined).
type dockerfileStage struct {
	from         string
	instructions []string
}

func parseDockerfile(t *testing.T, path string) (preamble []string, stages []dockerfileStage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cur strings.Builder
	flush := func() {
		in := strings.TrimSpace(cur.String())
		cur.Reset()
		if in == "" {
			return
		}
		if strings.HasPrefix(strings.ToUpper(in), "FROM ") {
			stages = append(stages, dockerfileStage{from: in})
		} else if len(stages) == 0 {
			preamble = append(preamble, in)
		} else {
			stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return preamble, stages
}

// TestDockerfile: multi-stage; the build stage compiles the binary named by CMD statically (CGO_ENABLED=0); the
// final stage is a distroless or scratch image that runs it as a numeric non-root user.
func TestDockerfile(t *testing.T) {
	_, stages := parseDockerfile(t, filepath.Join(repo, "deploy/docker/Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	joined := strings.Join(build.instructions, "\n")
	for _, want := range []string{"ARG CMD", "CGO_ENABLED=0", "go build", `"./cmd/${CMD}"`, "-trimpath"} {
		if !strings.Contains(joined, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?i)^FROM \$\{BASE\}$|distroless/static|scratch`).MatchString(final.from) {
		t.Errorf("final stage %q: want distroless static or scratch", final.from)
	}
	var user string
	for _, in := range final.instructions {
		if strings.HasPrefix(in, "USER ") {
			user = strings.TrimPrefix(in, "USER ")
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
		t.Errorf("final stage USER %q: want a numeric non-root uid (Kubernetes' runAsNonRoot can verify only a number)", user)
	}
	if !strings.Contains(strings.Join(final.instructions, "\n"), "COPY --from=build") {
		t.Errorf("final stage copies nothing from the build stage")
	}
}

// TestEveryBinaryHasAnImage: each binary of cmd/ runs somewhere in Kubernetes (image tracepipe/<binary>).
func TestEveryBinaryHasAnImage(t *testing.T) {
	o := build(t, "deploy/k8s/base")
	images := map[string]bool{}
	for _, d := range o.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			name, _, _ := strings.Cut(c.Image, ":")
			images[name] = true
		}
	}
	for _, b := range cmdDirs(t) {
		if !images["tracepipe/"+b] {
			t.Errorf("cmd/%s: no Deployment runs the image tracepipe/%s", b, b)
		}
	}
}
