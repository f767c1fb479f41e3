using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>Runs the client tools of the interop tests (nbdinfo, nbdcopy, qemu-img, qemu-io, python3) with a timeout each.</summary>
internal static class InteropRun
{
    /// <summary>Longest any single client run may take before it is killed and the test fails.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Runs <paramref name="program"/> and returns whatever happened.</summary>
    public static ToolResult Raw(string program, params string[] arguments) => Tools.Run(program, arguments, timeout: Timeout);

    /// <summary>Runs <paramref name="program"/> and fails the test unless it exits 0.</summary>
    public static ToolResult Ok(string program, params string[] arguments)
    {
        var result = Raw(program, arguments);
        Assert.True(result.ExitCode == 0, $"{program} {string.Join(' ', arguments)}: {result}");
        return result;
    }

    /// <summary>Runs <paramref name="program"/> and fails the test unless it exits 0, adding the server's stderr to the message.</summary>
    public static ToolResult Ok(NbdServerProcess server, string program, params string[] arguments)
    {
        var result = Raw(program, arguments);
        Assert.True(result.ExitCode == 0, $"{program} {string.Join(' ', arguments)} against {server}: {result}\nserver stderr:\n{server.StdErr}");
        return result;
    }

    /// <summary>The system python (<c>/usr/bin/python3</c>), the one Debian's python3-libnbd serves; a pyenv python3 may come first on PATH.</summary>
    public const string SystemPython = "/usr/bin/python3";
}
