// cnirun is the runtime side of CNI for vRouter's tests, demo and benchmarks: it calls
// plugins the way containerd's CRI plugin does, through libcni (Debian's
// golang-github-appc-cni-dev), so vrouter-cni and the reference plugins are exercised
// exactly as on a node.
//
//	cnirun [--cache-dir DIR] add|check|del CONFLIST CONTAINERID NETNS [IFNAME]
//	cnirun [--cache-dir DIR] status CONFLIST
//	cnirun [--cache-dir DIR] gc CONFLIST [CONTAINERID[/IFNAME]...]
//	cnirun version PLUGIN
//
// add/check/del: libcni runs the list's plugins in order (del in reverse), injects the
// list's name and cniVersion, prevResult, and runtimeConfig from CAP_ARGS filtered by the
// capabilities each plugin declares; add caches its result (and check/del read it) under
// DIR/results, /var/lib/cni by default as on a node. add prints the result JSON.
//
// status and gc are CNI 1.1 verbs that Debian's libcni (1.1.2) predates; they are done here
// as libcni 1.2 does them. status sends STATUS to each plugin of the list in order; a list
// whose version is below 1.1.0 has no STATUS and counts as ready. gc first deletes (DEL,
// with the cached arguments) every attachment of this network in the cache that is not
// among the valid ones given, then, for lists of 1.1.0 or later, sends GC to each plugin
// with the valid ones as "cni.dev/valid-attachments" (and "cni.dev/attachments", the name
// an earlier draft of the spec used). A list with "disableGC": true is left alone.
//
// The version spoken: the highest of the list's "cniVersions" this client can speak
// (libcni 1.1.2 parses results up to 1.0.0; status and gc also speak 1.1.0), else its
// "cniVersion".
//
// version prints the versions the plugin supports (its answer to VERSION) as JSON.
//
// Environment: CNI_PATH (plugin directories, ':'-separated; required), CNI_ARGS
// ("K=V;K=V", passed to every plugin), CAP_ARGS (a JSON object of capability arguments,
// such as {"io.kubernetes.cri.pod-annotations": {...}}).
//
// Exit status 0 on success, 1 when a plugin or the configuration fails (one line on
// stderr naming the plugin, and the CNI error code when the plugin gave one), 2 on a usage
// error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

const usage = `usage: cnirun [--cache-dir DIR] add|check|del CONFLIST CONTAINERID NETNS [IFNAME]
       cnirun [--cache-dir DIR] status CONFLIST
       cnirun [--cache-dir DIR] gc CONFLIST [CONTAINERID[/IFNAME]...]
       cnirun version PLUGIN`

// The spec version that brought STATUS and GC.
const statusGCVersion = "1.1.0"

func main() {
	args := os.Args[1:]
	cacheDir := libcni.CacheDir
	if len(args) >= 2 && args[0] == "--cache-dir" {
		cacheDir, args = args[1], args[2:]
	}
	if len(args) == 0 {
		usageError("no command")
	}
	if err := run(args[0], args[1:], cacheDir); err != nil {
		fmt.Fprintf(os.Stderr, "cnirun: %s: %s\n", args[0], describe(err))
		os.Exit(1)
	}
}

func usageError(problem string) {
	fmt.Fprintf(os.Stderr, "cnirun: %s\n%s\n", problem, usage)
	os.Exit(2)
}

func run(cmd string, args []string, cacheDir string) error {
	ctx := context.Background()
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	if len(paths) == 0 {
		return errors.New("CNI_PATH is not set (the directories holding the plugins, ':'-separated)")
	}
	cni := libcni.NewCNIConfigWithCacheDir(paths, cacheDir, nil)
	if cmd == "version" {
		if len(args) != 1 {
			usageError("version takes PLUGIN")
		}
		info, err := cni.GetVersionInfo(ctx, args[0])
		if err != nil {
			return fmt.Errorf("plugin %q: %w", args[0], err)
		}
		out, _ := json.Marshal(map[string]interface{}{"supportedVersions": info.SupportedVersions()})
		fmt.Println(string(out))
		return nil
	}
	switch {
	case cmd == "add" || cmd == "check" || cmd == "del":
		if len(args) < 3 || len(args) > 4 {
			usageError(cmd + " takes CONFLIST CONTAINERID NETNS [IFNAME]")
		}
	case cmd == "status" && len(args) != 1:
		usageError("status takes CONFLIST")
	case cmd == "gc" && len(args) < 1:
		usageError("gc takes CONFLIST [CONTAINERID[/IFNAME]...]")
	case cmd != "status" && cmd != "gc":
		usageError(fmt.Sprintf("unknown command %q", cmd))
	}
	conf, err := loadList(args[0])
	if err != nil {
		return err
	}
	switch cmd {
	case "status":
		return status(ctx, cni, conf)
	case "gc":
		var valid []attachment
		for _, a := range args[1:] {
			id, ifName := a, "eth0"
			if i := strings.IndexByte(a, '/'); i >= 0 {
				id, ifName = a[:i], a[i+1:]
			}
			if id == "" || ifName == "" {
				return fmt.Errorf("valid attachment %q is not CONTAINERID or CONTAINERID/IFNAME", a)
			}
			valid = append(valid, attachment{ContainerID: id, IfName: ifName})
		}
		return gc(ctx, cni, cacheDir, conf, valid)
	}
	list, err := conf.speaking(resultVersions)
	if err != nil {
		return err
	}
	rt, err := runtimeConf(args[1], args[2], args[3:])
	if err != nil {
		return err
	}
	switch cmd {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return result.Print()
	case "check":
		// libcni names the failing plugin on add and del but not on check: name the list.
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			return fmt.Errorf("network %q failed (check): %w", list.Name, err)
		}
		return nil
	default:
		return cni.DelNetworkList(ctx, list, rt)
	}
}

// describe adds the CNI error code to a plugin's error, so scripts and people see both.
func describe(err error) string {
	var cniErr *types.Error
	if errors.As(err, &cniErr) && cniErr.Code != 0 {
		return fmt.Sprintf("%v (CNI error code %d)", err, cniErr.Code)
	}
	return err.Error()
}

// Versions whose results Debian's libcni (1.1.2) parses: what add, check and del speak.
var resultVersions = version.All.SupportedVersions()

// ... and status and gc, which carry no result, also speak the version that brought them.
var statusGCVersions = append(append([]string{}, resultVersions...), statusGCVersion)

// conflist: a parsed network configuration list and the keys libcni 1.1.2 does not read.
type conflist struct {
	*libcni.NetworkConfigList
	path        string
	cniVersions []string
	disableGC   bool
}

func loadList(path string) (*conflist, error) {
	data, err := ioutil.ReadFile(path)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var extra struct {
		CNIVersions []string `json:"cniVersions"`
		DisableGC   bool     `json:"disableGC"`
	}
	if err := json.Unmarshal(data, &extra); err != nil {
		return nil, fmt.Errorf("%s: cniVersions or disableGC: %w", path, err)
	}
	return &conflist{list, path, extra.CNIVersions, extra.DisableGC}, nil
}

// speaking: a copy of the list at the version to speak, the highest of its "cniVersions"
// among `speakable`, else its "cniVersion" (libcni 1.2's negotiation).
func (c *conflist) speaking(speakable []string) (*libcni.NetworkConfigList, error) {
	list := *c.NetworkConfigList
	if len(c.cniVersions) == 0 {
		return &list, nil
	}
	best := ""
	for _, v := range c.cniVersions {
		if contains(speakable, v) && (best == "" || atLeast(v, best)) {
			best = v
		}
	}
	if best == "" {
		return nil, fmt.Errorf("%s: none of its cniVersions %v is one this client speaks %v", c.path, c.cniVersions, speakable)
	}
	list.CNIVersion = best
	return &list, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runtimeConf: the container, its netns and interface, CNI_ARGS and CAP_ARGS.
func runtimeConf(containerID, netns string, ifName []string) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{ContainerID: containerID, NetNS: netns, IfName: "eth0"}
	if len(ifName) > 0 {
		rt.IfName = ifName[0]
	}
	if s := os.Getenv("CNI_ARGS"); s != "" {
		for _, kv := range strings.Split(s, ";") {
			i := strings.IndexByte(kv, '=')
			if i <= 0 {
				return nil, fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", kv)
			}
			rt.Args = append(rt.Args, [2]string{kv[:i], kv[i+1:]})
		}
	}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("CAP_ARGS is not a JSON object: %w", err)
		}
	}
	return rt, nil
}

// pluginConf: a plugin's configuration as the list runs it (the list's name and version)
// with `more` added.
func pluginConf(list *libcni.NetworkConfigList, plugin *libcni.NetworkConfig, more map[string]interface{}) ([]byte, error) {
	values := map[string]interface{}{"name": list.Name, "cniVersion": list.CNIVersion}
	for k, v := range more {
		values[k] = v
	}
	conf, err := libcni.InjectConf(plugin, values)
	if err != nil {
		return nil, err
	}
	return conf.Bytes, nil
}

// execVerb runs one plugin of the list with a verb that carries no container (STATUS, GC).
func execVerb(ctx context.Context, cni *libcni.CNIConfig, verb string, plugin *libcni.NetworkConfig, conf []byte) error {
	path, err := invoke.FindInPath(plugin.Network.Type, cni.Path)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: verb, Path: strings.Join(cni.Path, string(os.PathListSeparator))}
	return invoke.ExecPluginWithoutResult(ctx, path, conf, args, nil)
}

func atLeast(v, min string) bool {
	ok, err := version.GreaterThanOrEqualTo(v, min)
	return err == nil && ok
}

func status(ctx context.Context, cni *libcni.CNIConfig, conf *conflist) error {
	list, err := conf.speaking(statusGCVersions)
	if err != nil {
		return err
	}
	if !atLeast(list.CNIVersion, statusGCVersion) {
		fmt.Fprintf(os.Stderr, "cnirun: status: %s speaks CNI %s, which has no STATUS: ready by default\n", list.Name, list.CNIVersion)
		return nil
	}
	for _, p := range list.Plugins {
		conf, err := pluginConf(list, p, nil)
		if err == nil {
			err = execVerb(ctx, cni, "STATUS", p, conf)
		}
		if err != nil {
			return fmt.Errorf("plugin type=%q: %w", p.Network.Type, err)
		}
	}
	return nil
}

// attachment: one entry of "cni.dev/valid-attachments".
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// cached is what libcni writes for each attachment under CACHEDIR/results.
type cached struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	CniArgs        [][2]string            `json:"cniArgs"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
}

// cachedAttachments: the attachments of network `name` that the cache holds.
func cachedAttachments(cacheDir, name string) ([]cached, error) {
	dir := filepath.Join(cacheDir, "results")
	files, err := ioutil.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []cached
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), name+"-") {
			continue
		}
		data, err := ioutil.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return nil, err
		}
		var c cached
		if json.Unmarshal(data, &c) != nil || c.Kind != libcni.CNICacheV1 || c.NetworkName != name {
			continue // not an attachment of this network (or an old format without its identity)
		}
		out = append(out, c)
	}
	return out, nil
}

func gc(ctx context.Context, cni *libcni.CNIConfig, cacheDir string, conf *conflist, valid []attachment) error {
	if conf.disableGC {
		fmt.Fprintf(os.Stderr, "cnirun: gc: %s has disableGC: nothing done\n", conf.Name)
		return nil
	}
	if valid == nil {
		valid = []attachment{} // [] on the wire, not null
	}
	keep := map[attachment]bool{}
	for _, a := range valid {
		keep[a] = true
	}
	var errs []string
	fail := func(format string, a ...interface{}) { errs = append(errs, fmt.Sprintf(format, a...)) }
	// 1. DEL every cached attachment of this network that is not valid (at a version whose
	// cached results libcni can read).
	stale, err := cachedAttachments(cacheDir, conf.Name)
	if err != nil {
		fail("reading the cache: %v", err)
	}
	for _, c := range stale {
		if keep[attachment{c.ContainerID, c.IfName}] {
			continue
		}
		list, err := conf.speaking(resultVersions)
		if err == nil {
			// libcni 1.1.2's cache does not record the netns: the DEL goes without one, as
			// the spec allows for a sandbox that is gone.
			rt := &libcni.RuntimeConf{ContainerID: c.ContainerID, IfName: c.IfName, Args: c.CniArgs, CapabilityArgs: c.CapabilityArgs}
			err = cni.DelNetworkList(ctx, list, rt)
		}
		if err != nil {
			fail("deleting the stale attachment %s/%s: %s", c.ContainerID, c.IfName, describe(err))
		}
	}
	// 2. GC to each plugin, for lists that speak 1.1.0.
	list, err := conf.speaking(statusGCVersions)
	if err != nil {
		fail("%v", err)
	} else if atLeast(list.CNIVersion, statusGCVersion) {
		more := map[string]interface{}{"cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}
		for _, p := range list.Plugins {
			conf, err := pluginConf(list, p, more)
			if err == nil {
				err = execVerb(ctx, cni, "GC", p, conf)
			}
			if err != nil {
				fail("plugin type=%q: %s", p.Network.Type, describe(err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
