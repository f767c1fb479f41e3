using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>Which program serves: ours (<c>qed serve</c>) or the reference (<c>qemu-nbd</c>).</summary>
public enum NbdServerKind
{
    /// <summary><c>$QED_CLI serve ARGS</c>.</summary>
    Qed,

    /// <summary><c>qemu-nbd ARGS</c>.</summary>
    QemuNbd,
}

/// <summary>
/// <c>qed serve ARGS</c> or <c>qemu-nbd ARGS</c> (the same arguments: qed serve takes qemu-nbd's options) as a separate
/// process. Start returns once the unix socket or TCP port is listening, found in /proc/net rather than by connecting,
/// because a probe connection would count as the one client a server without <c>-t</c> serves. Stop sends SIGTERM and
/// waits; every wait has a timeout and an overdue server is killed, so no test hangs on it. Stderr is kept for messages.
/// </summary>
public sealed class NbdServerProcess : IAsyncDisposable
{
    private static readonly TimeSpan s_startTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_stopTimeout = TimeSpan.FromSeconds(15);

    private readonly Process process;
    private readonly StringBuilder stderr = new();
    private readonly TaskCompletionSource exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private NbdServerProcess(NbdServerKind kind, Process process, string? socketPath, int port, string commandLine)
    {
        Kind = kind;
        this.process = process;
        SocketPath = socketPath;
        Port = port;
        CommandLine = commandLine;
    }

    /// <summary>The program serving.</summary>
    public NbdServerKind Kind { get; }

    /// <summary>The unix socket (<c>-k</c>), or null for TCP.</summary>
    public string? SocketPath { get; }

    /// <summary>The TCP port (<c>-p</c>), 0 for a unix socket.</summary>
    public int Port { get; }

    /// <summary>The command started, for messages.</summary>
    public string CommandLine { get; }

    /// <summary>The server's process id.</summary>
    public int Pid => process.Id;

    /// <summary>True once the process ended.</summary>
    public bool HasExited => exited.Task.IsCompleted;

    /// <summary>What the server printed on stderr (and stdout) so far.</summary>
    public string StdErr
    {
        get
        {
            lock (stderr)
            {
                return stderr.ToString();
            }
        }
    }

    /// <summary>A short name for tables: "qed" or "qemu-nbd".</summary>
    public string Name => KindName(Kind);

    /// <summary>"qed" or "qemu-nbd".</summary>
    public static string KindName(NbdServerKind kind) => kind == NbdServerKind.Qed ? "qed" : "qemu-nbd";

    /// <summary>The libnbd / qemu URI of export <paramref name="export"/> (the default export when empty).</summary>
    public string Uri(string export = "") => SocketPath is not null
        ? $"nbd+unix:///{export}?socket={SocketPath}"
        : TcpUri("127.0.0.1", export);

    /// <summary>The URI of export <paramref name="export"/> over TCP to <paramref name="host"/> (an IPv6 address in brackets).</summary>
    public string TcpUri(string host, string export = "") => $"nbd://{host}:{Port.ToString(CultureInfo.InvariantCulture)}/{export}";

    /// <summary>A TCP port free right now on 127.0.0.1 (the kernel's choice), for <c>-p</c>.</summary>
    public static int FreeTcpPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    /// <summary>
    /// Starts <paramref name="kind"/> with <paramref name="arguments"/> in <paramref name="workingDirectory"/> and waits
    /// until it listens (the <c>-k</c> socket, else the <c>-p</c> port on 127.0.0.1). Throws with the server's stderr
    /// when it exits first or does not listen in time.
    /// </summary>
    public static NbdServerProcess Start(NbdServerKind kind, string workingDirectory, params string[] arguments)
    {
        if (arguments.Contains("--fork"))
        {
            // The process started would be the parent that exits once the server listens; stop and kill need the server.
            throw new ArgumentException("NbdServerProcess runs servers in the foreground; --fork is tested by the serve tests", nameof(arguments));
        }
        string? socketPath = OptionValue(arguments, "-k", "--socket");
        string? portText = OptionValue(arguments, "-p", "--port");
        if (socketPath is null && portText is null)
        {
            throw new ArgumentException("the tests always name a socket (-k) or a port (-p)", nameof(arguments));
        }
        if (socketPath is not null && !Path.IsPathRooted(socketPath))
        {
            socketPath = Path.Combine(workingDirectory, socketPath);
        }
        int port = portText is null ? 0 : int.Parse(portText, CultureInfo.InvariantCulture);

        ProcessStartInfo info;
        if (kind == NbdServerKind.Qed)
        {
            info = QedProcess.StartInfo(workingDirectory, ["serve", .. arguments]);
            info.RedirectStandardInput = false;
        }
        else
        {
            info = new ProcessStartInfo("qemu-nbd")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = workingDirectory,
            };
            foreach (string argument in arguments)
            {
                info.ArgumentList.Add(argument);
            }
        }

        string commandLine = $"{(kind == NbdServerKind.Qed ? "qed serve" : "qemu-nbd")} {string.Join(' ', arguments)}";
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        NbdServerProcess? server = null;
        process.Exited += (_, _) => server?.exited.TrySetResult();
        process.OutputDataReceived += (_, e) => server?.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server?.Append(e.Data);
        server = new NbdServerProcess(kind, process, socketPath, port, commandLine);
        if (!process.Start())
        {
            throw new InvalidOperationException($"could not start {commandLine}");
        }
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (process.HasExited)
        {
            server.exited.TrySetResult();
        }

        var clock = Stopwatch.StartNew();
        while (!(socketPath is not null ? UnixSocketListening(socketPath) : TcpPortListening(port)))
        {
            if (server.HasExited || process.HasExited)
            {
                process.WaitForExit(); // the last stderr lines
                throw new InvalidOperationException($"{commandLine} exited with {process.ExitCode} before listening: {server.StdErr}");
            }
            if (clock.Elapsed > s_startTimeout)
            {
                server.Kill();
                throw new TimeoutException($"{commandLine} did not listen within {s_startTimeout.TotalSeconds} s: {server.StdErr}");
            }
            Thread.Sleep(5);
        }
        return server;
    }

    /// <summary>Sends SIGTERM and waits for the exit status; a server still running after the timeout is killed and the call throws.</summary>
    public async Task<int> StopAsync(TimeSpan? timeout = null)
    {
        if (!HasExited)
        {
            // kill(1) rather than a P/Invoke: SIGTERM is what an operator (or systemd) sends.
            Tools.Run("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)], timeout: TimeSpan.FromSeconds(5));
        }
        await WaitForExitAsync(timeout ?? s_stopTimeout);
        return process.ExitCode;
    }

    /// <summary>Stops with SIGTERM and fails unless the server exited 0 (both qed serve and qemu-nbd do after a clean shutdown).</summary>
    public async Task StopCleanlyAsync(TimeSpan? timeout = null)
    {
        int exit = await StopAsync(timeout);
        Assert.True(exit == 0, $"{CommandLine} exited with {exit} after SIGTERM; stderr: {StdErr}");
    }

    /// <summary>Waits for the process to end by itself (a server without <c>-t</c> after its last client); kills it and throws after <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await exited.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            Kill();
            throw new TimeoutException($"{CommandLine} still running after {timeout.TotalSeconds} s; killed. stderr: {StdErr}");
        }
        process.WaitForExit(); // drains the output readers
        return process.ExitCode;
    }

    /// <summary>SIGKILL, then waits until the process is gone (its locks released).</summary>
    public void Kill()
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
            process.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    /// <summary>The server's resident memory (VmRSS from /proc/PID/status) in bytes, or -1 once it exited.</summary>
    public long ResidentBytes()
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{Pid.ToString(CultureInfo.InvariantCulture)}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    string[] parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        return -1;
    }

    /// <inheritdoc />
    public override string ToString() => CommandLine;

    /// <summary>Kills a server a test left running (a test that wants a clean exit stops it first).</summary>
    public ValueTask DisposeAsync()
    {
        Kill();
        process.Dispose();
        return ValueTask.CompletedTask;
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (stderr)
        {
            stderr.Append(line).Append('\n');
        }
    }

    private static string? OptionValue(string[] arguments, string shortName, string longName)
    {
        string? value = null;
        for (int i = 0; i < arguments.Length; i++)
        {
            string argument = arguments[i];
            if ((argument == shortName || argument == longName) && i + 1 < arguments.Length)
            {
                value = arguments[++i];
            }
            else if (argument.StartsWith(longName + "=", StringComparison.Ordinal))
            {
                value = argument[(longName.Length + 1)..];
            }
            else if (argument.StartsWith(shortName, StringComparison.Ordinal) && argument.Length > shortName.Length && !argument.StartsWith("--", StringComparison.Ordinal))
            {
                value = argument[shortName.Length..];
            }
        }
        return value;
    }

    /// <summary>True when a listening unix socket is bound to <paramref name="path"/> (flag __SO_ACCEPTCON in /proc/net/unix).</summary>
    private static bool UnixSocketListening(string path)
    {
        if (!File.Exists(path))
        {
            return false;
        }
        foreach (string line in File.ReadLines("/proc/net/unix").Skip(1))
        {
            // Num RefCount Protocol Flags Type St Inode Path
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 8 && fields[7] == path && (uint.Parse(fields[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture) & 0x10000) != 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>True when some socket listens on TCP <paramref name="port"/> (state 0A in /proc/net/tcp or tcp6).</summary>
    private static bool TcpPortListening(int port)
    {
        string hexPort = ":" + port.ToString("X4", CultureInfo.InvariantCulture);
        foreach (string table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            if (!File.Exists(table))
            {
                continue;
            }
            foreach (string line in File.ReadLines(table).Skip(1))
            {
                // sl local_address rem_address st ...
                string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length >= 4 && fields[1].EndsWith(hexPort, StringComparison.Ordinal) && fields[3] == "0A")
                {
                    return true;
                }
            }
        }
        return false;
    }
}
