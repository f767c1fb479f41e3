using System.Diagnostics;
using System.IO.Pipes;

namespace Qed.Cli.Commands.Serve;

/// <summary>
/// <c>--fork</c>: the command starts itself again as a detached child and returns 0 only once that child listens.
/// </summary>
/// <remarks>
/// .NET cannot fork a running runtime, so the parent re-executes the program with the same arguments and an
/// environment marker naming the write end of an inherited pipe. The child starts a new session (setsid), shares the
/// parent's stderr so that its errors before readiness reach the caller, and once it listens (and the pid file is
/// written) writes one byte to the pipe and points its standard streams at /dev/null (stderr stays with -v). The parent
/// returns 0 on that byte; if the pipe closes first, the child failed, and the parent returns the child's exit status.
/// </remarks>
internal static class ServeDaemon
{
    /// <summary>The environment variable that marks the child and names its readiness descriptor.</summary>
    public const string ReadyVariable = "QED_SERVE_READY_FD";

    private const byte ReadyByte = (byte)'R';
    private static string? s_readyHandle = Environment.GetEnvironmentVariable(ReadyVariable);

    /// <summary>True in the child a <c>--fork</c> parent started.</summary>
    public static bool IsChild => s_readyHandle is not null;

    /// <summary>Starts the child and waits until it listens or fails; returns the exit status for the parent.</summary>
    public static int RunParent(IReadOnlyList<string> arguments, CommandContext context)
    {
        var (program, prefix) = SelfCommand();
        using var ready = new AnonymousPipeServerStream(PipeDirection.In, HandleInheritability.Inheritable);
        var info = new ProcessStartInfo(program) { UseShellExecute = false };
        foreach (string argument in prefix.Concat(arguments))
        {
            info.ArgumentList.Add(argument);
        }
        info.Environment[ReadyVariable] = ready.GetClientHandleAsString();

        context.Out.Flush();
        context.Err.Flush();
        using var child = Process.Start(info) ?? throw new CliException("could not start the server process");
        ready.DisposeLocalCopyOfClientHandle();

        Span<byte> buffer = stackalloc byte[1];
        int read;
        try
        {
            read = ready.Read(buffer);
        }
        catch (IOException)
        {
            read = 0;
        }
        if (read == 1 && buffer[0] == ReadyByte)
        {
            return 0;
        }
        child.WaitForExit();
        return child.ExitCode == 0 ? 1 : child.ExitCode;
    }

    /// <summary>In the child, first thing: leave the parent's session, so that its terminal's signals no longer reach the server.</summary>
    public static void DetachIfChild()
    {
        if (IsChild)
        {
            ServeNative.StartSession();
        }
    }

    /// <summary>
    /// In the child, once it listens: tells the parent, then lets go of the parent's standard streams (keeping stderr
    /// when <paramref name="keepStderr"/>). Does nothing in a process that was not started by <see cref="RunParent"/>.
    /// </summary>
    public static void SignalReadyIfChild(bool keepStderr)
    {
        string? handle = Interlocked.Exchange(ref s_readyHandle, null);
        if (handle is null)
        {
            return;
        }
        Environment.SetEnvironmentVariable(ReadyVariable, null);
        try
        {
            using var pipe = new AnonymousPipeClientStream(PipeDirection.Out, handle);
            pipe.WriteByte(ReadyByte);
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            // The parent is gone (killed while waiting): nobody to tell; the server goes on.
        }
        ServeNative.DetachFromStarter(keepStderr);
    }

    /// <summary>How to start this program again: the native executable itself, or <c>dotnet Qed.Cli.dll</c> for a managed build.</summary>
    private static (string Program, string[] Prefix) SelfCommand()
    {
        string processPath = Environment.ProcessPath ?? throw new CliException("--fork: cannot tell which program is running");
        string name = Path.GetFileNameWithoutExtension(processPath);
        if (string.Equals(name, "dotnet", StringComparison.Ordinal))
        {
            string assembly = Environment.GetCommandLineArgs()[0];
            return (processPath, [Path.GetFullPath(assembly)]);
        }
        return (processPath, []);
    }
}
