// Package feed is a small activity-feed system, instrumented only with
// tracepipe's instrumentation library (instrument/...), that shows the whole
// story of the talk tracepipe answers: one slow storage shard under
// contention, found from the traces.
//
//		client ──HTTP──► api-gateway ──gRPC──► feed ──HTTP──► storage (shards 0..N-1)
//		                     │                  │  └─ cache (in process)
//		                     │                  └─Kafka (fanout topic)──► fanout ──HTTP──► storage
//		                     └──HTTP──► profile (OpenTelemetry SDK) ──HTTP──► avatar (OpenTelemetry SDK)
//
//	  - api-gateway (HTTP, tracehttp.Middleware): GET /feed?user= and POST
//	    /post?user=; tags client (X-Client header), api_key (a fingerprint of
//	    X-Api-Key, never the key), user; calls feed over gRPC (tracegrpc
//	    interceptors, trace context in gRPC metadata) and, when configured, the
//	    profile service over HTTP.
//	  - feed (gRPC service feed.Feed, GetFeed and Publish; messages are the
//	    protobuf well-known types, so no generated code): GetFeed reads the
//	    cache, and on a miss the user's timeline from three shards in parallel,
//	    then ranks; Publish writes the post to the author's shard and produces
//	    a fan-out message to Kafka with the trace context in record headers.
//	  - storage (HTTP): shards, each a bounded number of concurrent readers and
//	    writers. Config.SlowShard admits one request at a time and takes
//	    longer, so under load requests queue on it: operation
//	    "ReadPosts shard-N" / "WritePosts shard-N", tag shard=shard-N.
//	  - fanout (Kafka consumer group): a consumer span (FollowsFrom the
//	    producer's span) per message, then writes to the followers' shards.
//	  - profile and avatar: OpenTelemetry SDK services (W3C traceparent), to
//	    show a mixed fleet; they run when Config.Profile is set.
//
// System runs every service in one process on loopback listeners, as
// separate services with their own tracer each (the caller decides how each
// tracer reports: UDP agent, HTTP collector endpoint, OTLP); Load drives a
// bounded workload through the gateway.
package feed
