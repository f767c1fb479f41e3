using System.Text.RegularExpressions;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>Runs our <c>qed</c> command line in-process and helpers to compare its output with qemu-img's and qemu-io's.</summary>
internal static partial class QedCli
{
    /// <summary>Runs <c>qed ARGS</c> through <c>Program.Run</c>, capturing both streams.</summary>
    public static ToolResult Run(params string[] args)
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        int exit = Qed.Cli.Program.Run(args, stdout, stderr);
        return new ToolResult(exit, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs qed and fails the test unless it succeeded.</summary>
    public static ToolResult Ok(params string[] args)
    {
        var result = Run(args);
        Assert.True(result.ExitCode == 0, $"qed {string.Join(' ', args)} failed: {result}");
        return result;
    }

    /// <summary>Lines of a stream, without the final empty line.</summary>
    public static string[] Lines(string text) => text.Length == 0 ? [] : text.TrimEnd('\n').Split('\n');

    /// <summary>Replaces the timing-dependent part of qemu-io statistics lines (<c>4 KiB, 1 ops; 00.00 sec (...)</c>) with a fixed text.</summary>
    public static string NormalizeStatistics(string output) => StatisticsLine().Replace(output, "$1, 1 ops; TIME (RATE)");

    /// <summary>What one stderr line of qemu-img or qemu-io says with our program name.</summary>
    public static string AsQed(string qemuLine) =>
        QemuPrefix().Replace(qemuLine, "qed: ").Replace("'qemu-img --help'", "'qed --help'", StringComparison.Ordinal);

    /// <summary>sha256 of a file, or "missing".</summary>
    public static string Fingerprint(string path) => File.Exists(path) ? Tools.Sha256OfFile(path) + ":" + new FileInfo(path).Length : "missing";

    [GeneratedRegex(@"^([0-9.]+ (?:bytes|KiB|MiB|GiB|TiB|PiB|EiB)), 1 ops; (?:\d\d\.\d\d sec|\d+:\d\d:\d\d\.\d\d) \([0-9.]+ (?:bytes|KiB|MiB|GiB|TiB|PiB|EiB)/sec and [0-9.]+ ops/sec\)$", RegexOptions.Multiline)]
    private static partial Regex StatisticsLine();

    [GeneratedRegex(@"^qemu-(?:img|io): ", RegexOptions.Multiline)]
    private static partial Regex QemuPrefix();
}
