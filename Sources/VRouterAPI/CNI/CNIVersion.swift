// CNI spec versions: which ones this plugin speaks, and the result shape each one wants.
// Results are written in the version of the request's config (libcni converts with
// version.NewResult(confVersion, out) and fails on anything else).

public enum CNIVersion {
    /// What VERSION reports. 0.3.x/0.4.0 results carry "version" per IP; 1.x do not.
    public static let supported = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    public static let latest = "1.1.0"

    /// The parts of "MAJOR.MINOR.PATCH", or nil when malformed.
    public static func parse(_ v: String) -> (Int, Int, Int)? {
        let parts = v.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let a = Int(parts[0]), let b = Int(parts[1]), let c = Int(parts[2]), a >= 0, b >= 0,
            c >= 0
        else {
            return nil
        }
        return (a, b, c)
    }

    public static func isSupported(_ v: String) -> Bool { supported.contains(v) }

    /// True when `v` is at least `atLeast` (both well formed).
    public static func atLeast(_ v: String, _ min: String) -> Bool {
        guard let a = parse(v), let b = parse(min) else { return false }
        return a >= b
    }

    /// IPs carry `"version": "4"|"6"` before 1.0.0.
    public static func ipsCarryVersion(_ v: String) -> Bool { !atLeast(v, "1.0.0") }
}
