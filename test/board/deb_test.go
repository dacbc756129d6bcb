package board

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/testenv"
)

var (
	debOnce  sync.Once
	debPaths map[string]string
	debErr   error
)

// debs runs scripts/deb.sh once (what `make deb` runs after `make cross`)
// on the test binaries and returns the packages by Debian arch.
func debs(t *testing.T) map[string]string {
	t.Helper()
	bins := map[string]string{"armhf": binary(t, "armv6"), "arm64": binary(t, "arm64"), "amd64": binary(t, "amd64")}
	debOnce.Do(func() {
		dist := filepath.Join(buildDir, "dist")
		cmd := exec.Command("bash", "scripts/deb.sh", testVersion)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "BINDIR="+filepath.Dir(bins["amd64"]), "DIST="+dist)
		out, err := cmd.CombinedOutput()
		if err != nil {
			debErr = fmt.Errorf("scripts/deb.sh: %v\n%s", err, out)
			return
		}
		debPaths = map[string]string{}
		for arch := range bins {
			debPaths[arch] = filepath.Join(dist, "edgegw_"+testVersion+"_"+arch+".deb")
		}
	})
	if debErr != nil {
		t.Fatal(debErr)
	}
	return debPaths
}

// TestDebPackages: make deb's packages pass lintian, hold the expected
// files for their architecture, and carry a unit systemd-analyze accepts.
func TestDebPackages(t *testing.T) {
	testenv.Integration(t, "the built binaries, qemu, dpkg and a real Mosquitto")
	need(t, "dpkg-deb", "lintian", "systemd-analyze", "file")
	pkgs := debs(t)
	wantFiles := []string{
		"./usr/bin/edgegw",
		"./lib/systemd/system/edgegw.service",
		"./etc/edgegw/gateway.toml",
		"./usr/lib/sysusers.d/edgegw.conf",
		"./usr/lib/tmpfiles.d/edgegw.conf",
		"./usr/share/doc/edgegw/copyright",
		"./usr/share/doc/edgegw/changelog.gz",
		"./usr/share/doc/edgegw/board.md",
		"./usr/share/man/man1/edgegw.1.gz",
		"./usr/share/lintian/overrides/edgegw",
	}
	wantELF := map[string]string{"armhf": "ARM, EABI5", "arm64": "ARM aarch64", "amd64": "x86-64"}
	for arch, deb := range pkgs {
		t.Run(arch, func(t *testing.T) {
			contents := mustRun(t, time.Minute, "dpkg-deb", "--contents", deb)
			for _, f := range wantFiles {
				if !strings.Contains(contents, " "+f+"\n") {
					t.Errorf("%s lacks %s:\n%s", filepath.Base(deb), f, contents)
				}
			}
			if got := strings.TrimSpace(mustRun(t, time.Minute, "dpkg-deb", "-f", deb, "Architecture")); got != arch {
				t.Errorf("Architecture = %q, want %q", got, arch)
			}
			if got := strings.TrimSpace(mustRun(t, time.Minute, "dpkg-deb", "-f", deb, "Version")); got != testVersion {
				t.Errorf("Version = %q, want %q", got, testVersion)
			}
			conf := mustRun(t, time.Minute, "sh", "-c", "dpkg-deb --ctrl-tarfile "+deb+" | tar -xOf - ./conffiles")
			if strings.TrimSpace(conf) != "/etc/edgegw/gateway.toml" {
				t.Errorf("conffiles = %q, want /etc/edgegw/gateway.toml", conf)
			}
			root := t.TempDir()
			mustRun(t, time.Minute, "dpkg-deb", "-x", deb, root)
			info := mustRun(t, time.Minute, "file", "-b", filepath.Join(root, "usr/bin/edgegw"))
			if !strings.Contains(info, wantELF[arch]) || !strings.Contains(info, "statically linked") {
				t.Errorf("usr/bin/edgegw in the %s package: %s", arch, info)
			}
		})
	}

	// lintian over the three at once (it takes seconds per package).
	args := []string{"--fail-on", "error,warning", "--tag-display-limit", "0", "-I", "--pedantic"}
	for _, a := range []string{"amd64", "arm64", "armhf"} {
		args = append(args, pkgs[a])
	}
	if out, err := runCmd(t, 5*time.Minute, "lintian", args...); err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	} else if strings.Contains(out, "E: ") || strings.Contains(out, "W: ") {
		t.Errorf("lintian reported:\n%s", out)
	}

	// systemd-analyze verify on the unit as installed: the root is the
	// unpacked amd64 package over this machine's systemd units (for
	// sysinit.target and friends) and kill(1) (ExecReload), so every
	// ExecStart= binary and every dependency exists there.
	root := t.TempDir()
	mustRun(t, time.Minute, "mkdir", "-p", root+"/lib/systemd/system", root+"/usr/bin")
	mustRun(t, time.Minute, "cp", "-r", "/lib/systemd/system/.", root+"/lib/systemd/system/")
	mustRun(t, time.Minute, "cp", "/usr/bin/kill", root+"/usr/bin/kill")
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, time.Minute, "dpkg-deb", "-x", pkgs["amd64"], root)
	out, err := runCmd(t, 2*time.Minute, "systemd-analyze", "verify", "--root="+root, "edgegw.service")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// And a broken copy is caught, so the check above can fail.
	unit := filepath.Join(root, "lib/systemd/system/edgegw.service")
	b, _ := os.ReadFile(unit)
	if err := os.WriteFile(unit, []byte(strings.Replace(string(b), "Type=notify", "Type=notifyy", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := runCmd(t, 2*time.Minute, "systemd-analyze", "verify", "--root="+root, "edgegw.service"); !strings.Contains(out, "notifyy") {
		t.Errorf("systemd-analyze verify did not notice Type=notifyy: %q", out)
	}
}

// TestDebInstallScratchRoot installs the amd64 package into a scratch root
// with dpkg --root (maintainer scripts run chrootless with DPKG_ROOT set),
// checks what postinst made, runs the installed binary in a chroot with the
// installed config and certificates made by `edgegw certs init`, then
// removes and purges it.
func TestDebInstallScratchRoot(t *testing.T) {
	testenv.Integration(t, "the built binaries, qemu, dpkg and a real Mosquitto")
	need(t, "dpkg", "systemd-sysusers", "systemd-tmpfiles")
	testenv.Root(t, "it installs a package into a scratch root and chroots into it")
	deb := debs(t)["amd64"]
	root := t.TempDir()
	for _, d := range []string{"etc", "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log", "usr/sbin", "usr/bin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A Raspberry Pi OS-like account database without the gpio/i2c/spi
	// groups (a plain Debian), so postinst must create them.
	files := map[string]string{
		"etc/passwd":          "root:x:0:0:root:/root:/bin/bash\n",
		"etc/group":           "root:x:0:\ndialout:x:20:\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":         "root:*::\ndialout:*::\n",
		"var/lib/dpkg/status": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) string {
		t.Helper()
		// --force-depends: the scratch root has no systemd package; the
		// maintainer scripts use this machine's systemd-sysusers and
		// systemd-tmpfiles with --root.
		full := append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)
		return mustRun(t, 2*time.Minute, "dpkg", full...)
	}
	out := dpkg("-i", deb)
	if !strings.Contains(out, "edgegw check-config") {
		t.Errorf("postinst printed no next steps:\n%s", out)
	}

	// postinst: user, groups, data dir.
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	var uid, gid int
	for _, l := range strings.Split(string(passwd), "\n") {
		if strings.HasPrefix(l, "edgegw:") {
			f := strings.Split(l, ":")
			fmt.Sscanf(f[2], "%d", &uid)
			fmt.Sscanf(f[3], "%d", &gid)
			if f[6] != "/usr/sbin/nologin" || f[5] != "/var/lib/edgegw" {
				t.Errorf("edgegw user: %q", l)
			}
		}
	}
	if uid == 0 {
		t.Fatalf("postinst made no edgegw user:\n%s", passwd)
	}
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	for _, g := range []string{"dialout", "gpio", "i2c", "spi"} {
		found := false
		for _, l := range strings.Split(string(group), "\n") {
			if strings.HasPrefix(l, g+":") {
				f := strings.Split(l, ":")
				found = strings.Contains(","+f[3]+",", ",edgegw,")
			}
		}
		if !found {
			t.Errorf("edgegw is not in group %s:\n%s", g, group)
		}
	}
	st, err := os.Stat(filepath.Join(root, "var/lib/edgegw"))
	if err != nil {
		t.Fatalf("postinst made no /var/lib/edgegw: %v", err)
	}
	if sys := st.Sys().(*syscall.Stat_t); int(sys.Uid) != uid || st.Mode().Perm() != 0o750 {
		t.Errorf("/var/lib/edgegw: uid %d mode %v, want uid %d mode 0750", sys.Uid, st.Mode().Perm(), uid)
	}
	status := mustRun(t, time.Minute, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-s", "edgegw")
	if !strings.Contains(status, "Status: install ok installed") || !strings.Contains(status, "/etc/edgegw/gateway.toml") {
		t.Errorf("dpkg status:\n%s", status)
	}

	// The installed binary with the installed config, in a chroot: what the
	// user does after `apt install` — certificates, then check-config.
	bin := filepath.Join(root, "usr/bin/edgegw")
	out = mustRun(t, time.Minute, "chroot", root, "/usr/bin/edgegw", "version")
	if !strings.Contains(out, "edgegw "+testVersion) {
		t.Errorf("version: %q", out)
	}
	out, err = runCmd(t, time.Minute, "chroot", root, "/usr/bin/edgegw", "check-config")
	if err == nil || !strings.Contains(out, "/etc/edgegw/ca.crt") {
		t.Errorf("check-config without certificates should name the missing ca.crt: %v\n%s", err, out)
	}
	pki := "/root/pki"
	mustRun(t, time.Minute, "chroot", root, "/usr/bin/edgegw", "certs", "init", "--dir", pki, "--server-name", "broker.example.com", "--client-name", "gw-01")
	for from, to := range map[string]string{"ca.crt": "ca.crt", "gw-01.crt": "client.crt", "gw-01.key": "client.key"} {
		b, err := os.ReadFile(filepath.Join(root, pki, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/edgegw", to), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	out, err = runCmd(t, time.Minute, "chroot", root, "/usr/bin/edgegw", "check-config")
	if err != nil || !strings.Contains(out, "/etc/edgegw/gateway.toml: OK") {
		t.Errorf("check-config of the installed config with certificates: %v\n%s", err, out)
	}

	// Remove keeps data and config; purge deletes the data.
	if err := os.WriteFile(filepath.Join(root, "var/lib/edgegw/marker"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--remove", "edgegw")
	if _, err := os.Stat(bin); !os.IsNotExist(err) {
		t.Errorf("remove left the binary: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/edgegw/marker")); err != nil {
		t.Errorf("remove deleted the data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/edgegw/gateway.toml")); err != nil {
		t.Errorf("remove deleted the conffile: %v", err)
	}
	dpkg("--purge", "edgegw")
	if _, err := os.Stat(filepath.Join(root, "var/lib/edgegw")); !os.IsNotExist(err) {
		t.Errorf("purge left /var/lib/edgegw: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/edgegw/gateway.toml")); !os.IsNotExist(err) {
		t.Errorf("purge left the conffile: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/edgegw/client.key")); err != nil {
		t.Errorf("purge deleted the user's key (it is the user's, not the package's): %v", err)
	}
}
