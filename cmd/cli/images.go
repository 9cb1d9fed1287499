package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/components/image"
	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
)

type imagesOptions struct {
	criSocket string
	timeout   time.Duration
}

func newImagesCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &imagesOptions{}
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Load and list container images in the node's containerd",
		Long: `Load and list the container images of the node's bundled containerd
(namespace k8s.io, the one the kubelet uses). A node pulls workloads' images
from registries (configured in /etc/kubeforge/registries.yaml) unless it is
air-gapped (init or join --air-gapped); either way, images load with
"kubeforge images import", and archives copied into
/var/lib/kubeforge/agent/images are imported at every node service start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&o.criSocket, "cri-socket", config.DefaultPaths().ContainerdSocket(),
		"containerd socket of the node (default: the bundled one, or the runtime the running node service uses)")
	cmd.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		// A node on the host's containerd (--cri-socket at init or join):
		// its images are there.
		if !cmd.Flags().Changed("cri-socket") {
			if st, err := node.ReadState(config.DefaultPaths()); err == nil && st.ExternalRuntime && st.CRISocket != "" {
				o.criSocket = st.CRISocket
			}
		}
	}
	cmd.PersistentFlags().DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")

	cmd.AddCommand(&cobra.Command{
		Use:   "import FILE...",
		Short: "Import image archives (docker save or OCI, plain or gzip/zstd) and unpack them",
		Long: `Import image archives into the node's containerd and unpack them for this
machine's platform. FILE is a "docker save" archive or an OCI image layout
tarball, plain or compressed with gzip or zstd. One line is printed per image.`,
		Example: `  docker save busybox:1.36 -o busybox.tar && kubeforge images import busybox.tar`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			return explainNotRunning(image.Import(ctx, o.criSocket, files, out))
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the images: reference, digest, size, pinned",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			return explainNotRunning(image.List(ctx, o.criSocket, out))
		},
	})
	return cmd
}

// explainNotRunning adds what to do when containerd does not answer.
func explainNotRunning(err error) error {
	if errors.Is(err, image.ErrNotRunning) {
		return fmt.Errorf("%w; is the node service running? start it with `kubeforge node start`", err)
	}
	return err
}
