package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/components"
	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/supervisor"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/gctune"
	"github.com/kubeforge/kubeforge/internal/progress"
)

type nodeOptions struct {
	paths     config.Paths
	criSocket string
	mode      string
	timeout   time.Duration
	output    string

	kubeletOnly bool
}

func newNodeCmd(_ io.Reader, out, errOut io.Writer) *cobra.Command {
	o := &nodeOptions{paths: config.DefaultPaths()}
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run, start, stop or inspect the node service (containerd and the kubelet)",
		Long: `The node service keeps a node's containerd and kubelet running, as child
processes of kubeforge (kubeforge component containerd|kubelet). It imports
the kubeforge and pause images, and starts the kubelet as soon as
` + config.DefaultPaths().KubeletConfigFile() + ` exists. With systemd as init it runs as the
` + node.UnitName + ` unit, otherwise as a detached daemon (log: ` + config.DefaultPaths().NodeLogFile() + `).`,
		Args: cobra.NoArgs,
	}
	for _, f := range node.PathFlags(&o.paths) {
		cmd.PersistentFlags().StringVar(f.Field, f.Name, *f.Field, f.Usage)
	}

	run := &cobra.Command{
		Use:   "run",
		Short: "Run the node service in the foreground (what the unit or daemon runs)",
		Long: `Run the node service in the foreground: start containerd, import the images,
wait for the kubelet config and start the kubelet; restart either when it
dies. SIGTERM or SIGINT stops the kubelet, then containerd (containers keep
running) and exits 0. SIGHUP restarts the kubelet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gctune.Steady()
			components.ProfileStartup("node")
			return supervisor.Run(cmd.Context(), supervisor.Options{
				Paths:     o.paths,
				CRISocket: o.criSocket,
				Progress:  progress.New(out, false),
				Log:       slog.New(slog.NewTextHandler(errOut, nil)),
			})
		},
	}
	run.Flags().StringVar(&o.criSocket, "cri-socket", "", "use this external container runtime instead of the bundled containerd")

	start := &cobra.Command{
		Use:   "start",
		Short: "Start the node service unless it runs; return once the container runtime is ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return node.Start(cmd.Context(), o.paths, node.StartOptions{
				CRISocket: o.criSocket,
				Mode:      node.Mode(o.mode),
				Timeout:   o.timeout,
				Progress:  progress.New(out, false),
			})
		},
	}
	start.Flags().StringVar(&o.criSocket, "cri-socket", "", "use this external container runtime instead of the bundled containerd")
	start.Flags().StringVar(&o.mode, "mode", "", `how to run the service: "systemd", "daemon", or empty to pick systemd when it is init`)
	start.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the container runtime")

	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the node service: the kubelet, then containerd (containers keep running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			pid, was := node.Running(o.paths)
			begin := time.Now()
			if o.kubeletOnly {
				if err := node.StopKubelet(ctx, o.paths); err != nil {
					return err
				}
				progress.New(out, false).Done(node.Phase, "stop", "", begin, "Stopped the kubelet; containerd keeps running")
				return nil
			}
			if err := node.Stop(ctx, o.paths); err != nil {
				return err
			}
			p := progress.New(out, false)
			if was {
				p.Done(node.Phase, "stop", "", begin, "Stopped the node service (pid %d)", pid)
			} else {
				p.Printf(node.Phase, "The node service is not running")
			}
			return nil
		},
	}
	stop.Flags().DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait before killing what still runs")
	stop.Flags().BoolVar(&o.kubeletOnly, "kubelet-only", false, "stop only the kubelet, and keep it stopped until the service restarts; containerd keeps running")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show whether the node service runs, its children's pids and readiness",
		Long: `Show whether the node service runs, its children's pids and readiness, and the
health of each of its duties.

Exit status: 0 when the service runs and nothing in it fails; 2 when it runs but
the container runtime does not answer, the kubelet is not running (and was not
stopped on request), or a duty is failing (warnings do not count); 3 when the
service is not running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st := node.GetStatus(cmd.Context(), o.paths)
			switch o.output {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			case "", "text":
				printNodeStatus(out, o.paths, st)
			default:
				return fmt.Errorf("--output %q: must be text or json", o.output)
			}
			if !st.Running {
				return &exitError{code: 3, err: fmt.Errorf("the node service is not running")}
			}
			if p := st.Problems(); len(p) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("the node service runs, but %s", strings.Join(p, "; "))}
			}
			return nil
		},
	}
	status.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")

	restart := &cobra.Command{
		Use:   "restart",
		Short: "Restart the node service so it reads its configuration again (containers keep running)",
		Long: `Stop the node service and start it again: containerd and the kubelet re-read
their configuration, including /etc/kubeforge/registries.yaml. Containers keep
running. A registries.yaml the node would refuse is refused first, and the
running service is left as it was.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return node.Restart(cmd.Context(), o.paths, node.StartOptions{
				CRISocket: o.criSocket,
				Mode:      node.Mode(o.mode),
				Timeout:   o.timeout,
				Progress:  progress.New(out, false),
			})
		},
	}
	restart.Flags().StringVar(&o.criSocket, "cri-socket", "", "use this external container runtime instead of the bundled containerd (default: the one it runs with)")
	restart.Flags().StringVar(&o.mode, "mode", "", `how to run the service: "systemd", "daemon", or empty to pick systemd when it is init`)
	restart.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the container runtime")

	cmd.AddCommand(run, start, stop, restart, status)
	return cmd
}

func printNodeStatus(w io.Writer, p config.Paths, st node.Status) {
	if !st.Running {
		fmt.Fprintln(w, "node service: not running")
	} else {
		fmt.Fprintf(w, "node service: running (pid %d, %s), %s\n", st.PID, st.Mode, orDash(st.State.Phase))
	}
	yes := func(b bool, y, n string) string {
		if b {
			return y
		}
		return n
	}
	runtime := "containerd"
	if st.State.ExternalRuntime {
		runtime = "container runtime (external, " + st.State.CRISocket + ")"
	}
	fmt.Fprintf(w, "  %s: %s, socket %s\n", runtime, pidText(st.ContainerdPID, st.State.ExternalRuntime),
		yes(st.RuntimeReady, "ready", "not answering"))
	if st.State.Containerd.Restarts > 0 {
		fmt.Fprintf(w, "    restarts: %d\n", st.State.Containerd.Restarts)
	}
	if st.Running {
		img := yes(st.State.ImagesReady, "imported", "not imported yet")
		if st.State.ImagesError != "" {
			img += " (last error: " + st.State.ImagesError + ")"
		}
		fmt.Fprintf(w, "  images: %s\n", img)
		printRegistryStatus(w, st.State)
	}
	switch {
	case st.KubeletPID != 0:
		where := ""
		if node.InOtherNetNS(st.KubeletPID) {
			where = ", in another network namespace than this shell's"
		}
		fmt.Fprintf(w, "  kubelet: running (pid %d%s), healthz: %s\n", st.KubeletPID, where, st.KubeletHealth)
	case st.State.KubeletHeld:
		fmt.Fprintln(w, "  kubelet: stopped on request (until the node service restarts)")
	case st.Running && st.State.Phase == "waiting for the kubelet config":
		fmt.Fprintf(w, "  kubelet: waiting for %s\n", p.KubeletConfigFile())
	default:
		fmt.Fprintln(w, "  kubelet: not running")
	}
	if st.State.Kubelet.Restarts > 0 {
		fmt.Fprintf(w, "    restarts: %d\n", st.State.Kubelet.Restarts)
	}
	for _, d := range st.State.Duties {
		line := fmt.Sprintf("  %s: %s", d.Name, d.Status)
		if !d.Since.IsZero() {
			line += " since " + d.Since.Format(time.RFC3339)
		}
		if d.Message != "" {
			line += ": " + d.Message
		}
		fmt.Fprintln(w, line)
	}
	logs := []string{p.NodeLogFile(), node.ContainerdLogFile(p), node.KubeletLogFile(p)}
	for _, d := range st.State.Duties {
		if c, ok := strings.CutPrefix(d.Name, "control-plane/"); ok { // run as a process
			logs = append(logs, node.ControlPlaneLogFile(p, c))
		}
	}
	fmt.Fprintf(w, "  logs: %s\n", strings.Join(logs, ", "))
}

func pidText(pid int, external bool) string {
	switch {
	case external:
		return "not managed by kubeforge"
	case pid == 0:
		return "not running"
	}
	return fmt.Sprintf("running (pid %d)", pid)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printRegistryStatus shows how the node pulls and what the import
// directory gave, with the errors of either.
func printRegistryStatus(w io.Writer, st node.State) {
	if st.Registries != "" {
		fmt.Fprintf(w, "  registries: %s\n", st.Registries)
	}
	if st.RegistriesError != "" {
		fmt.Fprintf(w, "    refused (the last good configuration is in use): %s\n", st.RegistriesError)
	}
	if st.ImportedArchives > 0 || st.ImportError != "" {
		fmt.Fprintf(w, "  image archives: %d imported from the import directory\n", st.ImportedArchives)
	}
	if st.ImportError != "" {
		fmt.Fprintf(w, "    failed: %s\n", st.ImportError)
	}
}
