package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// UnitName is the node service's systemd unit.
const UnitName = "kubeforge-node.service"

// UnitFile is where the unit is written (a logical path).
const UnitFile = "/etc/systemd/system/" + UnitName

// SystemdRunning reports whether systemd is the init system (sd_booted:
// /run/systemd/system exists).
func SystemdRunning() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

func unitInstalled(p config.Paths) bool { return exists(p.Host(UnitFile)) }

// Unit renders the systemd unit running `exe args…`. KillMode=process: on
// stop systemd signals the supervisor only, which stops the kubelet and
// containerd in order and leaves the containers' shims alone (as
// containerd's own unit does). Delegate=yes lets the kubelet and runc
// manage cgroups below the unit.
func Unit(exe string, args []string) string {
	var b strings.Builder
	b.WriteString(`[Unit]
Description=kubeforge node service (containerd and the kubelet)
Documentation=https://github.com/kubeforge/kubeforge
Wants=network-online.target
After=network-online.target local-fs.target

[Service]
Type=simple
ExecStart=`)
	b.WriteString(systemdQuote(exe))
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(systemdQuote(a))
	}
	b.WriteString(`
Restart=always
RestartSec=2
StartLimitInterval=0
KillMode=process
Delegate=yes
TimeoutStopSec=45
LimitNOFILE=infinity
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`)
	return b.String()
}

// systemdQuote quotes a word for ExecStart when it needs it.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`)
	return `"` + r.Replace(s) + `"`
}

func startUnit(ctx context.Context, p config.Paths, exe string, args []string) error {
	if _, err := fsutil.WriteFile(p.Host(UnitFile), []byte(Unit(exe, args)), 0o600); err != nil {
		return fmt.Errorf("write the node service unit: %w", err)
	}
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	return systemctl(ctx, "enable", "--now", UnitName)
}

func stopUnit(ctx context.Context) error {
	return systemctl(ctx, "stop", UnitName)
}

func systemctl(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Uninstall stops the node service and, when it runs as a systemd unit,
// disables the unit and removes its file (for `kubeforge reset`).
func Uninstall(ctx context.Context, p config.Paths) error {
	if err := Stop(ctx, p); err != nil {
		return err
	}
	if !unitInstalled(p) {
		return nil
	}
	if SystemdRunning() {
		if err := systemctl(ctx, "disable", UnitName); err != nil {
			return err
		}
	}
	if err := os.Remove(p.Host(UnitFile)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", UnitFile, err)
	}
	if SystemdRunning() {
		return systemctl(ctx, "daemon-reload")
	}
	return nil
}
