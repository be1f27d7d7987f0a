//go:build race

package chaos

// raceEnabled: the test runs under the race detector, so the service
// processes are built with it too (and share its compiled packages).
const raceEnabled = true
