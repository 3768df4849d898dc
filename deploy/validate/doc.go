// Package validate checks tracepipe's deploy files offline, with no container engine and no cluster: its tests are
// the proof, run by `make check` (scripts/check.sh) and by `cd deploy/validate && go test ./...`.
//
// It is a Go module of its own so that the Kubernetes, kustomize and compose-spec libraries it needs stay out of
// tracepipe's module graph (a user of the pipeline does not download Kubernetes).
//
// What the tests prove:
//
//   - Kubernetes (deploy/k8s): every kustomization builds with kustomize's own library (the one `kubectl kustomize`
//     embeds); every object it emits decodes strictly — unknown or duplicate fields are errors — into the
//     Kubernetes API types of k8s.io/api (Deployment, Service, PodDisruptionBudget, Job, HorizontalPodAutoscaler,
//     ConfigMap, Namespace) or prometheus-operator's (ServiceMonitor); KEDA's ScaledObject, whose Go types live only
//     in KEDA's operator module, decodes strictly into a struct written here after KEDA's CRD, with the Kafka
//     scaler's metadata keys checked against the scaler's documented set. Then the objects are checked against each
//     other: every Deployment has liveness, readiness (and for consumers startup) probes on /healthz at a declared
//     port, requests and limits, a non-root security context, a PodDisruptionBudget and a Service selecting its
//     pods; every ScaledObject and HPA targets a Deployment, names the group and topic its container consumes and
//     never asks for more pods than the topic has partitions; the ServiceMonitor selects a Service of every stage
//     through a port it declares; every ConfigMap a pod reads exists with the keys read and fits kubectl apply's
//     annotation limit; every rule file decodes strictly as a PrometheusRule spec; the ConfigMaps' files are
//     byte-identical copies of deploy/prometheus, deploy/grafana and deploy/topics.
//   - Compose (deploy/compose): the file loads with compose-spec's own loader (compose-go, which `docker compose`
//     uses) including its JSON-schema validation, interpolation and merge keys; then: three KRaft nodes with
//     distinct IDs that agree on the cluster ID and the quorum and advertise their own names; the topics one-shot
//     waits for every broker and creates topics with replication factor 3 and min.insync.replicas 2; every stage
//     waits for it; two ingesters and two aggregators; every bind-mounted file exists; Prometheus scrapes every
//     stage at the port the stage listens on and its rule glob matches the rule files (and promtool accepts the
//     configuration with the rules loaded); every image is built from deploy/docker/Dockerfile for a binary that
//     exists; the provisioned Grafana datasources serve every dashboard's datasource variables and UIDs.
//   - Flags: every flag the compose file and the Kubernetes containers pass is a flag of that binary, as listed in
//     docs/configuration.md (whose tables a test of each cmd package generates from the binary's own flag set).
//   - Docker (deploy/docker/Dockerfile): multi-stage, static (CGO_ENABLED=0), a numeric non-root USER in the final
//     stage, and the build argument naming the binary; every binary under cmd/ has an image in compose and in
//     Kubernetes.
//
// What they do not prove: that the images build (no container engine here: `bash deploy/docker/build-check.sh`
// runs the Dockerfile's build command on the host instead) or that the containers start and talk to each other;
// that a cluster's admission (API-server validation beyond decoding, PodSecurity, quotas) accepts the objects; that
// KEDA's and prometheus-operator's controllers act as intended; that the pinned third-party images exist.
package validate
