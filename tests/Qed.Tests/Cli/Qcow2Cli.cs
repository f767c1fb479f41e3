using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// Runs qemu-img and qed with the same arguments on the qcow2 fixtures of QCOW2.md §16 (<see cref="Qcow2Fixtures"/>).
/// An argument <c>@NAME</c> names a file of the fixture directory (<c>@Q09</c> is <c>Q09.qcow2</c>, <c>@Q11-base.raw</c>
/// that file). qed runs in-process with absolute paths, except for Q17, whose data file QEMU opens relative to the
/// working directory: then both tools run in the fixture directory with relative names and qed as a process.
/// </summary>
internal static class Qcow2Cli
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(1);

    /// <summary>Both answers to one command line.</summary>
    public static (ToolResult Qemu, ToolResult Ours) Run(params string[] args)
    {
        string dir = Qcow2Fixtures.Directory;
        bool inDirectory = args.Any(a => a.StartsWith("@Q17", StringComparison.Ordinal));
        string[] resolved = [.. args.Select(a => a.StartsWith('@') ? Resolve(dir, a[1..], inDirectory) : a)];
        var qemu = Tools.QemuImgRaw(dir, resolved);
        var ours = inDirectory ? QedProcess.Run(dir, s_timeout, resolved) : QedCli.Run(resolved);
        return (qemu, ours);
    }

    /// <summary>Runs both and asserts the same exit status, stdout and stderr (qemu-img's lines spoken by qed).</summary>
    public static ToolResult AssertSame(params string[] args)
    {
        var (qemu, ours) = Run(args);
        string where = $"{string.Join(' ', args)}:\nqemu-img: {qemu}\nqed: {ours}";
        Assert.True(qemu.ExitCode == ours.ExitCode, where);
        Assert.True(qemu.StdOut == ours.StdOut, where);
        // qed warns once per dirty or corrupt image it reads (QEMU is silent): only Q13 of the fixtures is flagged (dirty).
        Assert.True(AsQed(qemu.StdErr) == WithoutOpenWarnings(ours.StdErr, out int warnings), where);
        // info and check show the flags themselves and do not warn.
        int expected = args[0] is "info" or "check" ? 0 : args.Count(a => a == "@Q13");
        Assert.True(expected == warnings, where);
        return ours;
    }

    /// <summary>qed's stderr without its warnings about dirty or corrupt qcow2 images, and how many there were.</summary>
    public static string WithoutOpenWarnings(string stderr, out int warnings)
    {
        var lines = QedCli.Lines(stderr);
        var kept = lines.Where(line => !IsOpenWarning(line)).ToArray();
        warnings = lines.Length - kept.Length;
        return string.Concat(kept.Select(line => line + "\n"));
    }

    private static bool IsOpenWarning(string line) =>
        line.StartsWith("qed: warning: ", StringComparison.Ordinal)
        && (line.Contains("(qcow2 dirty bit)", StringComparison.Ordinal) || line.Contains("(qcow2 corrupt bit)", StringComparison.Ordinal));

    /// <summary>qemu-img's stderr with qed's program name on every line.</summary>
    public static string AsQed(string stderr) => string.Concat(QedCli.Lines(stderr).Select(line => QedCli.AsQed(line) + "\n"));

    /// <summary>The fixture file named by <paramref name="name"/> (<c>Q09</c> or <c>Q11-base.raw</c>), absolute unless <paramref name="relative"/>.</summary>
    public static string Resolve(string dir, string name, bool relative)
    {
        string file = name.Contains('.', StringComparison.Ordinal) ? name : name + ".qcow2";
        return relative ? file : Path.Combine(dir, file);
    }

    /// <summary>The fixtures whose guest data can be read (all but the LUKS-encrypted Q16), for <c>[MemberData]</c>.</summary>
    public static TheoryData<string> Readable() => [.. Qcow2Fixtures.All.Where(f => !f.Encrypted).Select(f => f.Name)];

    /// <summary>Asserts a one-line refusal naming encryption: exit 1, nothing on stdout.</summary>
    public static void AssertEncryptedRefusal(ToolResult result)
    {
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Equal("", result.StdOut);
        Assert.Single(QedCli.Lines(result.StdErr));
        Assert.Contains("encrypted qcow2 images are not supported", result.StdErr, StringComparison.Ordinal);
    }
}
