// Command k8sso-csi-driver is the local cluster's CSI driver: volumes and snapshots are directories
// on this machine. One process serves the controller (for the upstream sidecars); one per node serves
// the node service and registers itself with that node's kubelet (plugin registration API).
package main

import (
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// DriverName is the CSI driver name (the StorageClasses' provisioner).
const DriverName = "csi.k8s-step-operator.io"

// TopologyKey labels each node with its own name: a volume is reachable from the nodes listed in its topology.
const TopologyKey = "topology.csi.k8s-step-operator.io/node"

var version = "0.1.0"

func main() {
	endpoint := flag.String("endpoint", "", "unix socket path to serve CSI on")
	stateDir := flag.String("state-dir", "", "directory holding volumes and snapshots")
	nodeID := flag.String("node-id", "", "serve the node service for this node (default: the controller service)")
	registrationDir := flag.String("registration-dir", "", "kubelet plugins_registry directory to register with (node mode)")
	flag.Parse()
	if *endpoint == "" || *stateDir == "" {
		log.Fatal("--endpoint and --state-dir are required")
	}
	store, err := OpenStore(*stateDir)
	if err != nil {
		log.Fatalf("state dir: %v", err)
	}
	servers := []*grpc.Server{}
	csiServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiServer, &Identity{Controller: *nodeID == ""})
	if *nodeID == "" {
		csi.RegisterControllerServer(csiServer, &Controller{Store: store})
	} else {
		csi.RegisterNodeServer(csiServer, &Node{Store: store, NodeID: *nodeID})
	}
	serve(csiServer, *endpoint)
	servers = append(servers, csiServer)
	if *registrationDir != "" {
		regServer := grpc.NewServer()
		registration.RegisterRegistrationServer(regServer, &Registrar{Endpoint: *endpoint})
		serve(regServer, filepath.Join(*registrationDir, DriverName+"-reg.sock"))
		servers = append(servers, regServer)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	for _, s := range servers {
		s.Stop()
	}
}

// serve listens on a fresh unix socket and serves in the background.
func serve(server *grpc.Server, path string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		log.Fatal(err)
	}
	_ = os.Remove(path)
	listener, err := net.Listen("unix", path)
	if err != nil {
		log.Fatalf("listen %s: %v", path, err)
	}
	log.Printf("serving on %s", path)
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Printf("serve %s: %v", path, err)
		}
	}()
}
