// Package policy holds every dunning decision as pure functions: given a
// loan's case (folded from its event log), a trigger and the current time, it
// says what to do. It imports no NATS, watermill or protobuf package and never
// reads the clock; a test keeps it that way.
package policy
