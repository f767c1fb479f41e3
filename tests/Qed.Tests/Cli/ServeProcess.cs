using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// A real <c>qed serve</c> process (<see cref="QedProcess"/>) for the lifecycle tests: started with a pid file so the
/// test knows when it listens, signalled, waited for with timeouts, and killed on dispose if it is still there.
/// </summary>
internal sealed class ServeProcess : IDisposable
{
    public const int SigHup = 1;
    public const int SigInt = 2;
    public const int SigTerm = 15;

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly object _stderrLock = new();

    private ServeProcess(Process process, string? pidFile)
    {
        _process = process;
        PidFile = pidFile;
    }

    /// <summary>The pid file the server was started with, if any.</summary>
    public string? PidFile { get; }

    /// <summary>The process id.</summary>
    public int Id => _process.Id;

    /// <summary>What the server printed on stderr so far.</summary>
    public string StdErr
    {
        get
        {
            lock (_stderrLock)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Starts <c>qed serve ARGS</c> (adding <c>--pid-file</c> in <paramref name="directory"/> unless one is given) and waits until it listens.</summary>
    public static ServeProcess Start(string directory, params string[] args)
    {
        string? pidFile = null;
        if (!args.Any(a => a.StartsWith("--pid-file", StringComparison.Ordinal)))
        {
            pidFile = Path.Combine(directory, "serve-" + Guid.NewGuid().ToString("N")[..8] + ".pid");
            args = ["--pid-file=" + pidFile, .. args];
        }
        var info = QedProcess.StartInfo(directory, ["serve", .. args]);
        // Through env, which execs in place (same pid): SIGINT at its default action even when the test runner was
        // started as a background job, whose SIGINT a shell ignores (and the runtime keeps ignored).
        info.ArgumentList.Insert(0, info.FileName);
        info.ArgumentList.Insert(0, "--default-signal=INT");
        info.FileName = "env";
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start qed serve");
        var server = new ServeProcess(process, pidFile);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (server._stderrLock)
                {
                    server._stderr.Append(e.Data).Append('\n');
                }
            }
        };
        process.BeginErrorReadLine();
        if (pidFile is not null)
        {
            server.WaitForPidFile(pidFile);
        }
        return server;
    }

    private void WaitForPidFile(string pidFile)
    {
        var deadline = Stopwatch.StartNew();
        while (!File.Exists(pidFile))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"qed serve exited with {_process.ExitCode} before listening: {StdErr}");
            }
            if (deadline.Elapsed > StartTimeout)
            {
                throw new TimeoutException($"qed serve did not write {pidFile} within {StartTimeout}: {StdErr}");
            }
            Thread.Sleep(10);
        }
    }

    /// <summary>
    /// Runs <c>qed serve ARGS</c> to its exit, as a shell's <c>$(...)</c> would: the output is read to its end, which
    /// must come with the exit even when a <c>--fork</c> child lives on (it must not keep the caller's pipes).
    /// </summary>
    public static ToolResult RunToExit(string directory, TimeSpan timeout, params string[] args)
    {
        using var process = Process.Start(QedProcess.StartInfo(directory, ["serve", .. args])) ?? throw new InvalidOperationException("could not start qed serve");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill();
            throw new TimeoutException($"qed serve {string.Join(' ', args)} did not return within {timeout}");
        }
        if (!Task.WhenAll(stdout, stderr).Wait(timeout))
        {
            throw new TimeoutException($"qed serve {string.Join(' ', args)} returned, but something still holds its output pipes open");
        }
        return new ToolResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Waits until stderr holds a line matching <paramref name="pattern"/> and returns the match.</summary>
    public System.Text.RegularExpressions.Match WaitForStderr(System.Text.RegularExpressions.Regex pattern, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var match = pattern.Match(StdErr);
            if (match.Success)
            {
                return match;
            }
            if (clock.Elapsed > timeout || _process.HasExited)
            {
                throw new TimeoutException($"qed serve printed no line matching {pattern}: {StdErr}");
            }
            Thread.Sleep(10);
        }
    }

    /// <summary>True while the process runs.</summary>
    public bool IsRunning => !_process.HasExited;

    /// <summary>Sends <paramref name="signal"/> to the server.</summary>
    public void Signal(int signal) => Send(_process.Id, signal);

    /// <summary>Waits for the exit and returns the status; fails the test on timeout.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            throw new TimeoutException($"qed serve still runs after {timeout}: {StdErr}");
        }
        _process.WaitForExit(); // drains the stderr reader
        return _process.ExitCode;
    }

    /// <summary>True when the process is still running after <paramref name="time"/>.</summary>
    public bool StillRunningAfter(TimeSpan time) => !_process.WaitForExit(time);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
        _process.Dispose();
    }

    /// <summary>Sends a signal to a process the test started (directly or through <c>--fork</c>).</summary>
    public static void Send(int pid, int signal)
    {
        var result = Tools.Run("kill", [$"-{signal}", pid.ToString(CultureInfo.InvariantCulture)], timeout: TimeSpan.FromSeconds(10));
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {pid} failed: {result}");
        }
    }

    /// <summary>True while a process with this id exists (and is not a zombie).</summary>
    public static bool Exists(int pid)
    {
        string stat = $"/proc/{pid}/stat";
        try
        {
            string text = File.ReadAllText(stat);
            return StatField(text, 3) != "Z";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Waits until process <paramref name="pid"/> is gone; false on timeout.</summary>
    public static bool WaitUntilGone(int pid, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (Exists(pid))
        {
            if (clock.Elapsed > timeout)
            {
                return false;
            }
            Thread.Sleep(10);
        }
        return true;
    }

    /// <summary>Field <paramref name="number"/> (1-based, as in proc(5)) of a <c>/proc/PID/stat</c> line; the command name may hold spaces.</summary>
    public static string StatField(string stat, int number)
    {
        int close = stat.LastIndexOf(')');
        string[] rest = stat[(close + 2)..].Split(' ');
        return number switch
        {
            1 => stat[..stat.IndexOf(' ', StringComparison.Ordinal)],
            2 => stat[(stat.IndexOf('(', StringComparison.Ordinal) + 1)..close],
            _ => rest[number - 3],
        };
    }

    /// <summary>The pid written in a pid file.</summary>
    public static int ReadPid(string pidFile) => int.Parse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture);

    /// <summary>Connects to a unix socket (with a timeout on reads).</summary>
    public static Socket ConnectUnix(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 5000, SendTimeout = 5000 };
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return socket;
    }
}
