package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repo is the repository root, seen from this package's directory.
const repo = "../.."

// kustomizations are the directories `kubectl apply -k` may be given.
var kustomizations = []string{"deploy/k8s/base", "deploy/k8s/overlays/production"}

// objects is one kustomize build, decoded.
type objects struct {
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	jobs         []*batchv1.Job
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	configMaps   []*corev1.ConfigMap
	namespaces   []*corev1.Namespace
	monitors     []*monitoringv1.ServiceMonitor
	scaledObject []*scaledObject
	namespaced   []metav1.Object // every object that lives in a namespace
}

func k8sDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, batchv1.AddToScheme,
		autoscalingv2.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	// EnableStrict: an unknown or duplicated field is an error, as `kubectl apply --validate=strict` would say.
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

var (
	builtMu sync.Mutex
	built   = map[string]*objects{}
)

// build runs kustomize on dir (relative to the repository root) and decodes every object strictly; a build that
// reported no error is kept for the other tests (they only read it).
func build(t *testing.T, dir string) *objects {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if o, ok := built[dir]; ok {
		return o
	}
	failed := t.Failed()
	o := buildUncached(t, dir)
	if !failed && !t.Failed() {
		built[dir] = o
	}
	return o
}

func buildUncached(t *testing.T, dir string) *objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(repo, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	dec := k8sDecoder(t)
	o := &objects{}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		id := fmt.Sprintf("%s %s/%s", dir, r.GetKind(), r.GetName())
		if r.GetApiVersion() == "keda.sh/v1alpha1" && r.GetKind() == "ScaledObject" {
			so, err := decodeScaledObject(y)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				continue
			}
			o.scaledObject = append(o.scaledObject, so)
			o.namespaced = append(o.namespaced, &so.ObjectMeta)
			continue
		}
		obj, _, err := dec.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: strict decoding: %v", id, err)
			continue
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			o.deployments = append(o.deployments, v)
		case *corev1.Service:
			o.services = append(o.services, v)
		case *policyv1.PodDisruptionBudget:
			o.pdbs = append(o.pdbs, v)
		case *batchv1.Job:
			o.jobs = append(o.jobs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			o.hpas = append(o.hpas, v)
		case *corev1.ConfigMap:
			o.configMaps = append(o.configMaps, v)
		case *corev1.Namespace:
			o.namespaces = append(o.namespaces, v)
			continue
		case *monitoringv1.ServiceMonitor:
			o.monitors = append(o.monitors, v)
		default:
			t.Errorf("%s: unexpected kind %T", id, obj)
			continue
		}
		o.namespaced = append(o.namespaced, obj.(metav1.Object))
	}
	return o
}

// scaledObject is KEDA's ScaledObject (keda.sh/v1alpha1), the fields of its CRD's schema, decoded strictly. KEDA's Go
// types live in its operator module (its whole dependency tree), so they are written here instead.
type scaledObject struct {
	APIVersion        string `json:"apiVersion"`
	Kind              string `json:"kind"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval  *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod   *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount  *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount  *int32 `json:"maxReplicaCount,omitempty"`
		Fallback         *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
		Advanced *struct {
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			MetricType        string            `json:"metricType,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// kafkaScalerKeys are the metadata keys of KEDA's Kafka scaler (keda.sh/docs, scalers/apache-kafka); a key with the
// suffix FromEnv names a variable of the target container instead of giving the value.
var kafkaScalerKeys = []string{
	"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
	"allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag",
	"ensureEvenDistributionOfPartitions", "partitionLimitation", "version", "sasl", "tls", "unsafeSsl",
}

func decodeScaledObject(y []byte) (*scaledObject, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.DisallowUnknownFields()
	var so scaledObject
	if err := d.Decode(&so); err != nil {
		return nil, fmt.Errorf("strict decoding: %w", err)
	}
	if so.Spec.ScaleTargetRef.Name == "" || len(so.Spec.Triggers) == 0 {
		return nil, fmt.Errorf("spec.scaleTargetRef.name and spec.triggers are required")
	}
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "kafka" {
			return nil, fmt.Errorf("trigger type %q: only kafka triggers are expected here", tr.Type)
		}
		for k := range tr.Metadata {
			if !slices.Contains(kafkaScalerKeys, strings.TrimSuffix(k, "FromEnv")) {
				return nil, fmt.Errorf("kafka trigger: unknown metadata key %q", k)
			}
		}
		for _, k := range []string{"consumerGroup", "topic", "lagThreshold"} {
			if _, ok := tr.Metadata[k]; !ok {
				return nil, fmt.Errorf("kafka trigger: metadata %q is required here", k)
			}
		}
		if _, err := strconv.ParseInt(tr.Metadata["lagThreshold"], 10, 64); err != nil {
			return nil, fmt.Errorf("kafka trigger: lagThreshold: %w", err)
		}
	}
	return &so, nil
}

func TestKustomizationsBuildAndDecodeStrictly(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			o := build(t, dir)
			if len(o.deployments) != 5 || len(o.pdbs) != 5 || len(o.scaledObject) != 3 || len(o.monitors) != 1 ||
				len(o.hpas) != 1 || len(o.jobs) != 1 {
				t.Errorf("got %d Deployments, %d PDBs, %d ScaledObjects, %d ServiceMonitors, %d HPAs, %d Jobs; "+
					"want 5, 5, 3, 1, 1, 1", len(o.deployments), len(o.pdbs), len(o.scaledObject), len(o.monitors),
					len(o.hpas), len(o.jobs))
			}
			checkDeployments(t, o)
			checkScaling(t, o)
			checkServiceMonitor(t, o)
			checkConfigMaps(t, o)
		})
	}
}

func TestProductionOverlay(t *testing.T) {
	o := build(t, "deploy/k8s/overlays/production")
	if len(o.namespaces) != 1 || o.namespaces[0].Name != "tracepipe" {
		t.Fatalf("want the namespace tracepipe, got %d namespaces", len(o.namespaces))
	}
	for _, obj := range o.namespaced {
		if obj.GetNamespace() != "tracepipe" {
			t.Errorf("%s: namespace %q, want tracepipe", obj.GetName(), obj.GetNamespace())
		}
	}
	for _, d := range o.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if !strings.HasPrefix(c.Image, "registry.example.com/tracepipe/") || !strings.HasSuffix(c.Image, ":v0.1.0") {
				t.Errorf("%s: image %s: the overlay's images did not apply", d.Name, c.Image)
			}
			if d.Name == "tracepipe-ingester" {
				if n := countFlag(c.Args, "max-bytes-in-flight"); n != 1 || flagValue(c.Args, "max-bytes-in-flight") != "1073741824" {
					t.Errorf("ingester args %v: want one --max-bytes-in-flight=1073741824", c.Args)
				}
			}
		}
	}
	if o.monitors[0].Labels["release"] == "" {
		t.Errorf("ServiceMonitor: the overlay's release label is missing")
	}
}

// checkDeployments: probes, resources, security, a PDB and a Service for every Deployment; requests of the Job.
func checkDeployments(t *testing.T, o *objects) {
	for _, d := range o.deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not select its pod template's labels %v", d.Name, d.Spec.Selector, d.Spec.Template.Labels)
			continue
		}
		ps := d.Spec.Template.Spec
		if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot ||
			ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser == 0 {
			t.Errorf("%s: the pod must run as a non-root uid (runAsNonRoot, runAsUser)", d.Name)
		}
		if len(ps.Containers) != 1 {
			t.Errorf("%s: %d containers, want 1", d.Name, len(ps.Containers))
			continue
		}
		c := ps.Containers[0]
		checkContainer(t, d.Name, c)
		consumer := slices.Contains(c.Args, "--group") || countFlag(c.Args, "group") > 0 || countFlag(c.Args, "traces-topic") > 0
		if consumer && c.StartupProbe == nil {
			t.Errorf("%s: a consumer stage needs a startup probe (joining its group waits for the topics)", d.Name)
		}
		podLabels := labels.Set(d.Spec.Template.Labels)
		var pdbs, svcs int
		for _, p := range o.pdbs {
			s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && !s.Empty() && s.Matches(podLabels) {
				pdbs++
				if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
					t.Errorf("PDB %s: neither minAvailable nor maxUnavailable", p.Name)
				}
				if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.IntValue() >= int(ptrOr(d.Spec.Replicas, 1)) {
					t.Errorf("PDB %s: minAvailable %s leaves no pod of %s evictable", p.Name, p.Spec.MinAvailable, d.Name)
				}
			}
		}
		if pdbs != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", d.Name, pdbs)
		}
		for _, s := range o.services {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
				svcs++
				for _, p := range s.Spec.Ports {
					if p.TargetPort.StrVal != "" && !hasPort(c, p.TargetPort.StrVal) {
						t.Errorf("Service %s: targetPort %s is not a port of %s", s.Name, p.TargetPort.StrVal, d.Name)
					}
				}
			}
		}
		if svcs == 0 {
			t.Errorf("%s: no Service selects its pods", d.Name)
		}
	}
	for _, j := range o.jobs {
		for _, c := range j.Spec.Template.Spec.Containers {
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("Job %s: container %s lacks requests or limits", j.Name, c.Name)
			}
		}
	}
}

func checkContainer(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: %s probe must be an HTTP GET of /healthz", name, what)
			continue
		}
		if !hasPort(c, p.HTTPGet.Port.String()) {
			t.Errorf("%s: %s probe port %s is not a port of the container", name, what, p.HTTPGet.Port.String())
		}
	}
	if c.StartupProbe != nil && (c.StartupProbe.HTTPGet == nil || c.StartupProbe.HTTPGet.Path != "/healthz") {
		t.Errorf("%s: startup probe must be an HTTP GET of /healthz", name)
	}
	r := c.Resources
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okr := r.Requests[res]
		lim, okl := r.Limits[res]
		if !okr || !okl {
			t.Errorf("%s: %s request and limit are both required", name, res)
			continue
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s above its limit %s", name, res, req.String(), lim.String())
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
		!slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: container security context: no privilege escalation, read-only root, drop ALL", name)
	}
	// $(VAR) in args expands only from the container's own environment.
	for _, a := range c.Args {
		for _, v := range varRefs(a) {
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v }) {
				t.Errorf("%s: argument %q refers to $(%s), which the container does not define", name, a, v)
			}
		}
	}
}

func checkScaling(t *testing.T, o *objects) {
	partitions := topicPartitions(t, o)
	for _, so := range o.scaledObject {
		d := deployment(o, so.Spec.ScaleTargetRef.Name)
		if d == nil {
			t.Errorf("ScaledObject %s: target %s is not a Deployment here", so.Name, so.Spec.ScaleTargetRef.Name)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		mn, mx := ptrOr(so.Spec.MinReplicaCount, 0), ptrOr(so.Spec.MaxReplicaCount, 100)
		if mn < 1 || mn > mx {
			t.Errorf("ScaledObject %s: min %d, max %d replicas", so.Name, mn, mx)
		}
		for _, tr := range so.Spec.Triggers {
			md := tr.Metadata
			if env, ok := md["bootstrapServersFromEnv"]; ok {
				if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == env }) {
					t.Errorf("ScaledObject %s: bootstrapServersFromEnv %s is not in %s's environment", so.Name, env, d.Name)
				}
			} else if md["bootstrapServers"] == "" {
				t.Errorf("ScaledObject %s: no bootstrap servers", so.Name)
			}
			// The group and topic must be the ones the container consumes.
			group, topic := consumed(c.Args, md["consumerGroup"])
			if group == "" {
				t.Errorf("ScaledObject %s: %s does not consume as group %s", so.Name, d.Name, md["consumerGroup"])
			}
			if topic != md["topic"] {
				t.Errorf("ScaledObject %s: group %s reads %q, the trigger watches %q", so.Name, group, topic, md["topic"])
			}
			if n, ok := partitions[md["topic"]]; !ok {
				t.Errorf("ScaledObject %s: the topics Job does not create %s", so.Name, md["topic"])
			} else if int(mx) > n && len(so.Spec.Triggers) == 1 {
				t.Errorf("ScaledObject %s: max %d replicas for %d partitions of %s: the rest would idle", so.Name, mx, n, md["topic"])
			}
		}
	}
	for _, h := range o.hpas {
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || deployment(o, h.Spec.ScaleTargetRef.Name) == nil {
			t.Errorf("HPA %s: target %s/%s is not a Deployment here", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
	}
	// Every consumer stage is scaled by exactly one ScaledObject, and nothing is scaled twice.
	for _, d := range o.deployments {
		var n int
		for _, so := range o.scaledObject {
			if so.Spec.ScaleTargetRef.Name == d.Name {
				n++
			}
		}
		for _, h := range o.hpas {
			if h.Spec.ScaleTargetRef.Name == d.Name {
				n++
			}
		}
		consumer := countFlag(d.Spec.Template.Spec.Containers[0].Args, "kafka-brokers") > 0 && d.Name != "tracepipe-collector"
		if (consumer && n != 1) || n > 1 {
			t.Errorf("%s: scaled by %d autoscalers", d.Name, n)
		}
	}
}

// consumed returns which of the stage's consumer groups is group (with the defaults of the binaries' flags) and the
// topic that group reads; "" when the container does not consume as group.
func consumed(args []string, group string) (string, string) {
	flag := func(name, def string) string {
		if v := flagValue(args, name); v != "" {
			return v
		}
		return def
	}
	switch {
	case countFlag(args, "spans-topic") > 0 && countFlag(args, "traces-topic") > 0: // ingester
		if flag("group", "tracepipe-ingester") == group {
			return group, flag("spans-topic", "jaeger-spans")
		}
	case countFlag(args, "partials-topic") > 0: // aggregator: map and reduce groups
		if flag("group", "tracepipe-aggregator") == group {
			return group, flag("traces-topic", "tracepipe-traces")
		}
		if flag("reduce-group", "tracepipe-aggregator-reduce") == group {
			return group, flag("partials-topic", "tracepipe-partials")
		}
	case countFlag(args, "traces-topic") > 0: // indexer
		if flag("group", "tracepipe-indexer") == group {
			return group, flag("traces-topic", "tracepipe-traces")
		}
	}
	return "", ""
}

// topicPartitions reads the partition counts the topics Job creates (its environment, else the script's defaults).
func topicPartitions(t *testing.T, o *objects) map[string]int {
	t.Helper()
	env := map[string]string{"SPANS_PARTITIONS": "12", "TRACES_PARTITIONS": "12", "PARTIALS_PARTITIONS": "8"}
	for _, j := range o.jobs {
		for _, e := range j.Spec.Template.Spec.Containers[0].Env {
			if e.Value != "" {
				env[e.Name] = e.Value
			}
		}
	}
	out := map[string]int{}
	for topic, key := range map[string]string{"jaeger-spans": "SPANS_PARTITIONS", "tracepipe-traces": "TRACES_PARTITIONS", "tracepipe-partials": "PARTIALS_PARTITIONS"} {
		n, err := strconv.Atoi(env[key])
		if err != nil {
			t.Fatalf("topics Job: %s=%q", key, env[key])
		}
		out[topic] = n
	}
	return out
}

func checkServiceMonitor(t *testing.T, o *objects) {
	for _, m := range o.monitors {
		sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Errorf("ServiceMonitor %s: selector %v", m.Name, err)
			continue
		}
		var eps []string
		for _, ep := range m.Spec.Endpoints {
			eps = append(eps, ep.Port)
			if ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor %s: path %s", m.Name, ep.Path)
			}
		}
		// Every Deployment is scraped: a selected Service selects its pods through a port an endpoint names.
		for _, d := range o.deployments {
			scraped := false
			for _, s := range o.services {
				if !sel.Matches(labels.Set(s.Labels)) || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					continue
				}
				for _, p := range s.Spec.Ports {
					scraped = scraped || slices.Contains(eps, p.Name)
				}
			}
			if !scraped {
				t.Errorf("ServiceMonitor %s: does not scrape %s", m.Name, d.Name)
			}
		}
	}
}

func checkConfigMaps(t *testing.T, o *objects) {
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range o.configMaps {
		cms[cm.Name] = cm
		// kubectl apply (client side) keeps the whole object in an annotation of at most 256 KiB.
		size := 0
		for k, v := range cm.Data {
			size += len(k) + len(v)
		}
		if size > 200<<10 {
			t.Errorf("ConfigMap %s: %d bytes, too large for kubectl apply's last-applied annotation (256 KiB)", cm.Name, size)
		}
	}
	pods := map[string]corev1.PodSpec{}
	for _, d := range o.deployments {
		pods["Deployment "+d.Name] = d.Spec.Template.Spec
	}
	for _, j := range o.jobs {
		pods["Job "+j.Name] = j.Spec.Template.Spec
	}
	for name, ps := range pods {
		for _, c := range ps.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.ConfigMapKeyRef
				if cm := cms[ref.Name]; cm == nil {
					t.Errorf("%s: env %s: no ConfigMap %s", name, e.Name, ref.Name)
				} else if _, ok := cm.Data[ref.Key]; !ok {
					t.Errorf("%s: env %s: ConfigMap %s has no key %s", name, e.Name, ref.Name, ref.Key)
				}
			}
		}
		for _, v := range ps.Volumes {
			if v.ConfigMap != nil && cms[v.ConfigMap.Name] == nil {
				t.Errorf("%s: volume %s: no ConfigMap %s", name, v.Name, v.ConfigMap.Name)
			}
		}
	}
	var rules, dashboards int
	for _, cm := range o.configMaps {
		for k, v := range cm.Data {
			switch {
			case strings.HasSuffix(k, "-rules.yml"):
				rules++
				var spec monitoringv1.PrometheusRuleSpec
				if err := yaml.UnmarshalStrict([]byte(v), &spec); err != nil || len(spec.Groups) == 0 {
					t.Errorf("ConfigMap %s: %s is not a PrometheusRule spec: %v", cm.Name, k, err)
				}
			case strings.HasSuffix(k, ".json"):
				dashboards++
				if cm.Labels["grafana_dashboard"] != "1" || !json.Valid([]byte(v)) {
					t.Errorf("ConfigMap %s: %s: want valid JSON and the label grafana_dashboard=1", cm.Name, k)
				}
			}
		}
	}
	if rules == 0 || dashboards == 0 {
		t.Errorf("%d rule files and %d dashboards in ConfigMaps", rules, dashboards)
	}
}

// TestK8sFilesInSync: deploy/k8s/base/files holds exact copies of the rules, dashboards and topic script, and its
// kustomization lists each of them (bash deploy/k8s/sync-files.sh makes it so).
func TestK8sFilesInSync(t *testing.T) {
	want := map[string]string{"create-topics.sh": "deploy/topics/create-topics.sh"}
	for _, pattern := range []string{"deploy/prometheus/*-rules.yml", "deploy/grafana/*.json"} {
		ms, err := filepath.Glob(filepath.Join(repo, pattern))
		if err != nil || len(ms) == 0 {
			t.Fatalf("%s: %v (%d files)", pattern, err, len(ms))
		}
		for _, m := range ms {
			rel, _ := filepath.Rel(repo, m)
			want[filepath.Base(m)] = rel
		}
	}
	filesDir := filepath.Join(repo, "deploy/k8s/base/files")
	kust, err := os.ReadFile(filepath.Join(filesDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range want {
		a, err1 := os.ReadFile(filepath.Join(repo, src))
		b, err2 := os.ReadFile(filepath.Join(filesDir, name))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("deploy/k8s/base/files/%s differs from %s (or is missing): run bash deploy/k8s/sync-files.sh", name, src)
		}
		if !bytes.Contains(kust, []byte("      - "+name+"\n")) {
			t.Errorf("deploy/k8s/base/files/kustomization.yaml does not list %s: run bash deploy/k8s/sync-files.sh", name)
		}
	}
	ents, err := os.ReadDir(filesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, ok := want[e.Name()]; !ok && e.Name() != "kustomization.yaml" {
			t.Errorf("deploy/k8s/base/files/%s has no source any more: run bash deploy/k8s/sync-files.sh", e.Name())
		}
	}
}

func deployment(o *objects, name string) *appsv1.Deployment {
	for _, d := range o.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func hasPort(c corev1.Container, nameOrNumber string) bool {
	for _, p := range c.Ports {
		if p.Name == nameOrNumber || strconv.Itoa(int(p.ContainerPort)) == nameOrNumber {
			return true
		}
	}
	return false
}

// countFlag counts the arguments that set flag name (--name=v, -name=v, --name v).
func countFlag(args []string, name string) int {
	n := 0
	for _, a := range args {
		f, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && f == name {
			n++
		}
	}
	return n
}

// flagValue is the value of the last --name=v or --name v.
func flagValue(args []string, name string) string {
	v := ""
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		f, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f != name {
			continue
		}
		if ok {
			v = val
		} else if i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

// varRefs lists the $(VAR) references Kubernetes expands in a container argument.
func varRefs(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			return out
		}
		out = append(out, s[i+2:i+j])
		s = s[i+j+1:]
	}
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// TestStrictDecodingRejects: the decoders used above do reject what a typo makes.
func TestStrictDecodingRejects(t *testing.T) {
	dec := k8sDecoder(t)
	for _, tc := range []struct{ desc, y string }{
		{"unknown Deployment field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"},
		{"misspelt probe field", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, image: i, livenessProbe: {httpGet: {pth: /healthz, port: 1}}}]}\n"},
		{"duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n"},
		{"unknown ServiceMonitor field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {selector: {}, endpoint: []}\n"},
	} {
		if _, _, err := dec.Decode([]byte(tc.y), nil, nil); err == nil {
			t.Errorf("%s: decoded without error", tc.desc)
		}
	}
	for _, tc := range []struct{ desc, y string }{
		{"unknown spec field", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {scaleTargetRef: {name: d}, maxReplicas: 3, triggers: [{type: kafka, metadata: {consumerGroup: g, topic: t, lagThreshold: '1'}}]}\n"},
		{"unknown kafka key", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {scaleTargetRef: {name: d}, triggers: [{type: kafka, metadata: {consumerGroup: g, topic: t, lagThreshold: '1', lagTreshold: '2'}}]}\n"},
		{"no target", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {triggers: [{type: kafka, metadata: {consumerGroup: g, topic: t, lagThreshold: '1'}}]}\n"},
		{"bad lagThreshold", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {scaleTargetRef: {name: d}, triggers: [{type: kafka, metadata: {consumerGroup: g, topic: t, lagThreshold: 'lots'}}]}\n"},
	} {
		if _, err := decodeScaledObject([]byte(tc.y)); err == nil {
			t.Errorf("ScaledObject, %s: decoded without error", tc.desc)
		}
	}
}
