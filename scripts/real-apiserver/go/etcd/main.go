// Command etcd is etcd's own server entry point, built from its Go module at the version
// go.mod pins, so the real-server harness needs no etcd binary from elsewhere.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
