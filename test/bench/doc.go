// Package bench measures a pipeline stage against the physical limit of its
// design on this machine: the raw JetStream consume -> publish -> ack loop,
// in both durability modes of the embedded server (fsync before ack, and the
// NATS default sync interval). `make bench` runs it and prints a summary.
package bench
