package kafka

import (
	"context"
	"log/slog"
	"time"
)

// Special offsets a Processor's Open may return (Kafka's and kafka-go's
// values).
const (
	// FirstOffset starts at the log's first retained offset.
	FirstOffset int64 = -2
	// LastOffset starts at the log's end: only what is produced later.
	LastOffset int64 = -1
)

// Record is one consumed message. The runtime reuses the slice of Records
// it hands to Handle once Handle returns; a processor may keep the Key,
// Value and Headers of a record (they are never reused) but not the slice.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
	// HighWaterMark is the partition's end (the next offset to be
	// written) when the record was fetched.
	HighWaterMark int64
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Commit is a consumer group's committed position in a partition: Offset
// is the next offset to read (everything below it is done), Metadata is
// what the stage stored with it (Kafka's commit metadata, e.g. where a
// restart must start re-reading). Offset is negative when nothing is
// committed.
type Commit struct {
	Offset   int64
	Metadata string
}

// Committed reports whether c holds a committed offset.
func (c Commit) Committed() bool { return c.Offset >= 0 }

// Ack is the outcome of one produced message, delivered to the Processor
// that produced it, on its partition's goroutine: Token is the message's
// OutMessage.Token, Err nil once every in-sync replica has it (acks=all),
// else why the writer gave up (after its retries).
type Ack struct {
	Token any
	Err   error
}

// OutMessage is a message a Processor produces through its Assignment's
// Output. The writer keeps Key, Value and Headers until the message is
// acknowledged; the caller must not change them.
type OutMessage struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
	// Token comes back in the message's Ack.
	Token any
}

// Processor is a stage's logic for one partition during one assignment.
// Every method is called from the partition's goroutine, never
// concurrently; the Processor needs no locks for its own state.
//
// The lifecycle is: Open once; then Handle, Acked and Tick in any order
// (and Safe, after Tick, at every commit interval) until the partition is
// revoked, the group is left or the processor failed; then Close; then
// Acked for every message still outstanding (bounded by the group's
// CloseTimeout); then a final Safe and commit (skipped if an Acked failed
// or the timeout ran out); then Release, if the Processor implements
// Releaser.
type Processor interface {
	// Open restores the partition's state from the group's commit and
	// returns the first offset to fetch (an offset, FirstOffset or
	// LastOffset; an offset below the log's start reads from the start
	// and is reported as skipped by retention).
	Open(ctx context.Context, c Commit) (from int64, err error)
	// Handle takes records in order. taken < len(recs) is backpressure:
	// the runtime stops fetching and offers recs[taken:] again after the
	// next Acked or Tick. An error stops the partition.
	Handle(ctx context.Context, recs []Record) (taken int, err error)
	// Acked reports the outcome of a message produced by this processor.
	// An error stops the partition.
	Acked(a Ack) error
	// Tick is called every GroupConfig.TickInterval with the group clock's
	// time: expire, flush, publish. An error stops the partition.
	Tick(ctx context.Context, now time.Time) error
	// Safe returns the commit to store: every record below c.Offset is
	// durably reflected in acknowledged output. ok false: nothing to
	// commit yet. The runtime never commits an offset lower than the last
	// one committed in this assignment; it commits again at the same
	// offset when the metadata changed.
	Safe() (c Commit, ok bool)
	// Close is called once fetching has stopped (revocation, shutdown or
	// an error). It may produce (e.g. flush half-built output) but must
	// not wait for acknowledgements: the runtime delivers them afterwards.
	Close(ctx context.Context) error
}

// Releaser is implemented by processors that hold resources Safe still
// needs after Close (e.g. a share of an in-flight budget): Release is
// called last, after the final commit was made or given up.
type Releaser interface {
	Release()
}

// Committer is implemented by processors that want to know when a commit
// was stored (e.g. for their own metrics): Committed is called on the
// partition's goroutine after every successful commit.
type Committer interface {
	Committed(c Commit)
}

// Assignment is what a processor is built for: one partition of the
// group's topic in one generation.
type Assignment struct {
	Stage      string
	Group      string
	Topic      string
	Partition  int
	Generation int32
	// Committed is the group's commit of the partition when the
	// assignment started (also passed to Open).
	Committed Commit
	// Out produces messages whose Acks come back to this processor's
	// Acked; nil when the group has no writer (GroupConfig.Writer).
	Out *Output
	// Logger has stage, topic and partition attached.
	Logger *slog.Logger
}

// NewProcessor builds the processor of an assignment.
type NewProcessor func(a Assignment) (Processor, error)

// Clock is the time source of a Group (tests inject their own).
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
