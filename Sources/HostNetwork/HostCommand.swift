// Runs the host's network tools (iproute2's `ip`, nftables' `nft`, `sysctl`) for the tunnel setup.
// The node changes the host through these tools rather than raw netlink so every change is a
// command an operator can read, repeat and undo by hand (HostJournal stores them).
//
// posix_spawn with pipes (AF_UNIX socket pairs) for stdin/stdout/stderr, pumped with poll(2) so a large output cannot
// deadlock, and a timeout after which the child is killed (a hung tool must not hang the node).
// The pipes (socket pairs) are close-on-exec so a child spawned concurrently from another thread does not inherit them
// (it would hold a write end open and our read would never see EOF).
// With `namespace`, argv runs as `ip netns exec NAMESPACE argv…` (tests and multi-namespace setups).

#if os(Linux)
import Glibc

/// What a finished command printed and how it exited.
public struct HostCommandOutput: Sendable {
    public var argv: [String]
    /// The exit status, or 128 + the signal number if a signal killed it.
    public var status: Int32
    public var standardOutput: [UInt8]
    public var standardError: [UInt8]

    public var succeeded: Bool { status == 0 }
    public var outputText: String { String(decoding: standardOutput, as: UTF8.self) }
    public var errorText: String { String(decoding: standardError, as: UTF8.self) }
}

public struct HostCommand: Sendable {
    /// The network namespace (a name under /var/run/netns) commands run in; nil: the node's own.
    public var namespace: String?
    /// How long a command may run before it is killed.
    public var timeoutMilliseconds: Int32

    public init(namespace: String? = nil, timeoutMilliseconds: Int32 = 10_000) {
        self.namespace = namespace
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// The argv actually executed: `argv` itself, or prefixed with `ip netns exec NAMESPACE`.
    public func effectiveArgv(_ argv: [String]) -> [String] {
        guard let namespace else { return argv }
        return ["ip", "netns", "exec", namespace] + argv
    }

    /// Runs `argv` (with `input` on stdin) and throws unless it exits with status 0.
    @discardableResult
    public func run(_ argv: [String], input: [UInt8] = []) throws(HostCommandError) -> HostCommandOutput {
        let output = try runAllowingFailure(argv, input: input)
        guard output.succeeded else {
            throw .failed(argv: output.argv, status: output.status, standardError: output.errorText)
        }
        return output
    }

    /// Runs `argv` and returns its output whatever its exit status; throws only if it could not be
    /// started or timed out.
    public func runAllowingFailure(
        _ argv: [String], input: [UInt8] = []
    ) throws(HostCommandError)
        -> HostCommandOutput
    {
        let argv = effectiveArgv(argv)
        guard let program = argv.first else { throw .notFound(program: "") }
        guard let path = Self.resolve(program) else { throw .notFound(program: program) }
        return try Self.spawn(path: path, argv: argv, input: input, timeoutMilliseconds: timeoutMilliseconds)
    }

    // MARK: - Spawning

    /// Looks a program up in $PATH and then the usual sbin directories (root's tools live there, and
    /// a service's PATH often lacks them).
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return access(program, X_OK) == 0 ? program : nil }
        let path = getenv("PATH").flatMap { String(validatingCString: $0) } ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        for directory in directories where !directory.isEmpty {
            let candidate = directory + "/" + program
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    private static func spawn(
        path: String, argv: [String], input: [UInt8], timeoutMilliseconds: Int32
    )
        throws(HostCommandError) -> HostCommandOutput
    {
        // [child's end, parent's end] of stdin; [read end, write end] of stdout and stderr.
        var stdinPipe: [CInt] = [-1, -1]
        var stdoutPipe: [CInt] = [-1, -1]
        var stderrPipe: [CInt] = [-1, -1]
        var opened: [CInt] = []
        defer { for fd in opened where fd >= 0 { close(fd) } }
        for index in 0..<3 {
            var ends: [CInt] = [-1, -1]
            // Socket pairs rather than pipes: SOCK_CLOEXEC is atomic (Swift's Glibc lacks pipe2), and
            // writing stdin to a child that already exited fails with EPIPE (send with MSG_NOSIGNAL)
            // instead of killing the node with SIGPIPE.
            let made = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends)
            guard made == 0 else { throw .cannotStart(argv: argv, reason: errnoText()) }
            opened += ends
            switch index {
            case 0: stdinPipe = ends
            case 1: stdoutPipe = ends
            default: stderrPipe = ends
            }
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears O_CLOEXEC on the child's 0/1/2; everything else closes on exec.
        posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)

        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, path, &actions, nil, &cArguments, environ)
        guard spawned == 0 else { throw .cannotStart(argv: argv, reason: String(cString: strerror(spawned))) }

        // The parent keeps only its ends.
        for fd in [stdinPipe[0], stdoutPipe[1], stderrPipe[1]] { close(fd) }
        opened = [stdinPipe[1], stdoutPipe[0], stderrPipe[0]]
        for fd in opened { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        if input.isEmpty {
            close(stdinPipe[1])
            opened[0] = -1
        }

        var output: [UInt8] = []
        var errors: [UInt8] = []
        var written = 0
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        var timedOut = false
        while opened[0] >= 0 || opened[1] >= 0 || opened[2] >= 0 {
            let remaining = deadline - monotonicMilliseconds()
            if remaining <= 0 {
                timedOut = true
                break
            }
            var entries = [
                pollfd(fd: opened[0], events: Int16(POLLOUT), revents: 0),
                pollfd(fd: opened[1], events: Int16(POLLIN), revents: 0),
                pollfd(fd: opened[2], events: Int16(POLLIN), revents: 0),
            ]  // poll ignores negative fds
            let ready = poll(&entries, 3, Int32(clamping: remaining))
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            if entries[0].revents != 0 {
                let count = input[written...].withUnsafeBytes {
                    send(opened[0], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if count > 0 { written += count }
                if written == input.count || (count < 0 && errno != EAGAIN && errno != EINTR) {
                    close(opened[0])
                    opened[0] = -1
                }
            }
            for index in 1...2 where entries[index].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(opened[index], $0.baseAddress, $0.count) }
                if count > 0 {
                    if index == 1 { output += buffer[0..<count] } else { errors += buffer[0..<count] }
                } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                    close(opened[index])
                    opened[index] = -1
                }
            }
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: CInt = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if timedOut { throw .timedOut(argv: argv, milliseconds: timeoutMilliseconds) }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
        let signal = status & 0x7f
        let exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        return HostCommandOutput(argv: argv, status: exitStatus, standardOutput: output, standardError: errors)
    }

    private static func monotonicMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

}

public enum HostCommandError: Error, Equatable, Sendable, CustomStringConvertible {
    case notFound(program: String)
    case cannotStart(argv: [String], reason: String)
    case timedOut(argv: [String], milliseconds: Int32)
    case failed(argv: [String], status: Int32, standardError: String)

    /// The tool's own message (trimmed), for recognizing "already gone" errors.
    public var standardError: String {
        if case .failed(_, _, let text) = self { return text }
        return ""
    }

    private static let hint = "is iproute2/nftables installed? are you root?"

    public var description: String {
        switch self {
        case .notFound(let program):
            "cannot find `\(program)` in PATH, /usr/sbin or /sbin: \(Self.hint)"
        case .cannotStart(let argv, let reason):
            "cannot run `\(argv.joined(separator: " "))`: \(reason); \(Self.hint)"
        case .timedOut(let argv, let milliseconds):
            "`\(argv.joined(separator: " "))` did not finish within \(milliseconds) ms and was killed"
        case .failed(let argv, let status, let standardError):
            "`\(argv.joined(separator: " "))` failed with exit status \(status): "
                + "\(standardError.trimmingWhitespace.isEmpty ? "(no error output)" : standardError.trimmingWhitespace)"
                + "; \(Self.hint)"
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
#endif
