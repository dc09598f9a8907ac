// Bounding a test: an answer that never comes (a watch on a member that went silent, a task
// waiting on one that failed) must fail the test with its name, not hang the run. When time
// is up the test's task is cancelled (every wait in the code under test ends on
// cancellation); a test that still has not ended after a grace period ignores cancellation,
// which is a bug of its own: the process then exits with a message naming it, since a test
// cannot be abandoned while it runs (labs are cleaned by their reapers). The watchdog is a
// thread, not a task: a test that keeps the cooperative pool busy cannot starve it.

import Foundation
import Testing

/// `.deadline(.seconds(90))` on a suite bounds each of its tests.
public struct DeadlineTrait: TestTrait, SuiteTrait, TestScoping {
    public let limit: Duration
    public let grace: Duration
    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // Test functions only; a suite's own scope is not bounded as a whole.
        testCase == nil ? nil : self
    }

    public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        let late = "test \(test.name) did not finish within \(limit)"
        let watchdog = Watchdog(limit: limit, grace: grace, late: late)
        let result: Result<Void, any Error>
        do {
            try await function()
            result = .success(())
        } catch {
            result = .failure(error)
        }
        switch (result, watchdog.end()) {
        case (_, false): try result.get()
        case (.success, true): throw Failure("\(late) (it ended once cancelled)")
        case (.failure(let e), true): throw Failure("\(late); cancelled, it ended with: \(e)")
        }
    }
}

extension Trait where Self == DeadlineTrait {
    /// Each test ends within `limit` (cancelled then, the run ended `grace` later).
    public static func deadline(_ limit: Duration, grace: Duration = .seconds(15)) -> Self {
        DeadlineTrait(limit: limit, grace: grace)
    }
}

/// Cancels the task that made it after `limit`, ends the process `grace` later, unless
/// `end()` comes first. Safe: the task handle is used only under the lock and before `end()`,
/// which the task itself calls, so it is alive whenever it is used.
private final class Watchdog: @unchecked Sendable {
    private let condition = NSCondition()
    private var ended = false
    private var timedOut = false
    private let task: UnsafeCurrentTask?

    init(limit: Duration, grace: Duration, late: String) {
        task = withUnsafeCurrentTask { $0 }
        let (first, second) = (Date() + Self.seconds(limit), Date() + Self.seconds(limit + grace))
        Thread.detachNewThread { [self] in
            condition.lock()
            defer { condition.unlock() }
            while !ended && condition.wait(until: first) {}
            guard !ended else { return }
            timedOut = true
            task?.cancel()
            while !ended && condition.wait(until: second) {}
            guard !ended else { return }
            FileHandle.standardError.write(Data("\(late), nor \(grace) after being cancelled: ending the run\n".utf8))
            exit(3)
        }
    }

    /// The test has ended; whether time had run out.
    func end() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        ended = true
        condition.signal()
        return timedOut
    }

    private static func seconds(_ d: Duration) -> TimeInterval {
        let (s, atto) = d.components
        return TimeInterval(s) + TimeInterval(atto) / 1e18
    }
}
