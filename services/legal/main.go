// Command legal runs stage 5, legal referral, against an external NATS server.
package main

import "github.com/opendunning/dunning/pkg/app"

func main() { app.Main("legal") }
