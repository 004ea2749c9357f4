// Starting libFuzzer from a SwiftPM executable.
//
// libFuzzer normally supplies `main` and calls the target's `LLVMFuzzerTestOneInput`. SwiftPM (tools
// version 5.5 and later) instead compiles every Swift executable module with its entry point renamed
// to `<Module>_main` and links with `--defsym main=<Module>_main`, so a target without its own entry
// point fails to link ("undefined symbol 'FuzzX_main'"), with or without `-parse-as-library`. So each
// target has a tiny `@main` that hands its `LLVMFuzzerTestOneInput` to `LibFuzzer.run`, which calls
// libFuzzer's documented `LLVMFuzzerRunDriver` (the same thing libFuzzer's own `main` does).

import CLibFuzzer

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The C signature of `LLVMFuzzerTestOneInput`.
public typealias FuzzTestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

public enum LibFuzzer {
    /// Runs libFuzzer with this process's command line and exits with its status.
    public static func run(_ testOneInput: FuzzTestOneInput) -> Never {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
    }

    /// The fuzz input as an array (an empty input may come with a null pointer).
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }
}

/// Traps with `message` unless `condition` holds: a property violation is a crash libFuzzer keeps.
public func require(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #file,
    line: UInt = #line
) {
    if !condition() { fatalError("property violated: \(message())", file: file, line: line) }
}
