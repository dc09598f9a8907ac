// The CNI error document and its codes (CNI spec §"Error", 1.0.0 and 1.1.0). Runtimes
// (libcni's invoke package) read the error JSON from stdout, so that is where it goes;
// codes 0-99 are the spec's, 100 and up are this plugin's own.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct CNIError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var cniVersion: String
    public var code: Int
    public var msg: String
    public var details: String?

    public init(_ code: Code, _ msg: String, details: String? = nil, version: String = CNIVersion.latest) {
        self.init(code: code.rawValue, msg, details: details, version: version)
    }
    public init(code: Int, _ msg: String, details: String? = nil, version: String = CNIVersion.latest) {
        cniVersion = version
        self.code = code
        self.msg = msg
        self.details = details
    }

    public var description: String { details.map { "\(msg): \($0)" } ?? msg }

    public enum Code: Int, Sendable {
        case incompatibleVersion = 1
        case unsupportedField = 2
        case unknownContainer = 3
        case invalidEnvironment = 4
        case ioFailure = 5
        case decodingFailure = 6
        case invalidNetworkConfig = 7
        case tryAgainLater = 11
        case pluginNotAvailable = 50
        case limitedConnectivity = 51
        // This plugin's.
        /// A network the pod asks for is not known to vrouterd.
        case unknownNetwork = 100
        /// A requested address is outside the network's subnet or taken, or a pool is full.
        case addressUnavailable = 101
        /// The pod is attached already, or asks to change the networks of a running pod.
        case podConflict = 102
        /// Making or configuring an interface in the pod's namespace failed.
        case interfaceFailure = 103
        /// A delegated plugin (a NAD naming another CNI type) failed.
        case delegateFailure = 104
        /// vrouterd answered something this plugin does not understand, or failed itself.
        case internalError = 105
        /// CHECK found the pod's interfaces different from what was attached.
        case checkFailed = 106
    }

    public func json() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return ((try? e.encode(self)) ?? Data()) + Data("\n".utf8)
    }
}
