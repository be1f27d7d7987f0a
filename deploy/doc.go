// Package deploy holds the deployment files (Dockerfile, NATS cluster
// configuration, Prometheus configuration and alert rules; the compose file
// is docker-compose.yml at the repository root) and, in deploy_test.go, the
// test that validates them: the NATS configurations start a real three-node
// JetStream cluster, the compose services run in-process against it with the
// flags the compose file gives them, and every metric and label the alert
// rules name is checked against what those services export.
package deploy
