// Package cli wires kubeforge's commands: one file per command, one options
// struct per command, and no logic beyond turning flags into calls.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/grpclog"

	"github.com/kubeforge/kubeforge/components"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Main runs kubeforge with the given arguments (args[0] is the program name)
// and returns the process exit code.
func Main(args []string) int {
	// Multicall: the same executable serves as containerd's runc shim and
	// as the components, and those must not go through cobra.
	if code, handled := components.Multicall(args); handled {
		return code
	}
	// The commands' etcd and CRI clients are gRPC: its library logs its
	// connection chatter (a handshake cut short when a client closes) as
	// warnings in klog's format, which would land in a command's output
	// (`etcd member list`); the commands report their own errors. Set
	// before any gRPC use, as grpclog requires.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
	return Run(args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Run runs the kubeforge CLI (not the components: see Main) with args (no
// program name) on the given streams and returns the exit code; an error
// is printed to errOut. Tests run commands in-process through it.
func Run(args []string, in io.Reader, out, errOut io.Writer) int {
	root := NewRootCommand(in, out, errOut)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(errOut, "error: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// NewRootCommand builds the kubeforge command tree.
func NewRootCommand(in io.Reader, out, errOut io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubeforge",
		Short: "kubeforge: bootstrap Kubernetes nodes from one binary",
		Long: `kubeforge turns a Linux host into a Kubernetes node from one self-contained binary.

  kubeforge init    set up a control-plane node
  kubeforge join    add a node to a cluster
  kubeforge reset   undo init or join

The binary carries etcd, the Kubernetes control plane, the kubelet, kube-proxy,
containerd and CoreDNS; nothing is pulled from a registry.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	// `kubeforge completion bash|zsh|fish|powershell` (cobra's) prints a
	// completion script; the README says how to install it.
	for _, c := range []func(in io.Reader, out, errOut io.Writer) *cobra.Command{
		newInitCmd, newJoinCmd, newResetCmd, newTokenCmd, newCertsCmd, newConfigCmd,
		newNodeCmd, newImagesCmd, newComponentCmd, newVersionCmd,
		newEtcdCmd,
		newSecretsCmd,
		newUpgradeCmd,
		newKubeconfigCmd,
		newDashboardCmd,
		newLogsCmd,
		newClusterCmd,
	} {
		root.AddCommand(c(in, out, errOut))
	}
	return root
}
