using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd.Hostile;

/// <summary>What one case did to one server, and whether a normal client was served right after it.</summary>
internal sealed record HostileOutcome(HostileCase Case, string Outcome, string? NormalClientProblem, TimeSpan Elapsed)
{
    /// <summary>The outcome as our server must give it, and a normal client served afterwards.</summary>
    public bool Passed => Case.Accept(Outcome) && NormalClientProblem is null;
}

/// <summary>
/// Runs <see cref="HostileCases"/> and the cases that need the server's process or a clock (a read flood with replies
/// never read, more connections than <c>-e</c>, a client idle through the handshake deadline) against one target,
/// with a normal client after each case.
/// </summary>
internal static class HostileProber
{
    /// <summary>Growth of the server's resident memory tolerated under the flood (the issue's bound: 64 MiB besides the L2 cache).</summary>
    public const long FloodMemoryBound = 64L << 20;

    /// <summary>How long the idle client waits to be dropped; a server with a 10 s handshake deadline drops it before.</summary>
    public static readonly TimeSpan IdleWait = TimeSpan.FromSeconds(12.5);

    /// <summary>The case run in parallel with the others, since it takes the whole handshake deadline.</summary>
    public static readonly HostileCase IdleCase = new(
        "idle after the greeting (handshake deadline)",
        "dropped after the 10 s handshake deadline",
        (t, log) => log.Add(IdleThroughDeadline(t)),
        o => o.StartsWith("dropped by the server after ", StringComparison.Ordinal) && double.TryParse(o.Split(' ')[5], System.Globalization.CultureInfo.InvariantCulture, out double s) && s is >= 9 and <= 12);

    /// <summary>The flood case.</summary>
    public static readonly HostileCase FloodCase = new(
        "flood of 1 MiB READs, replies never read",
        $"server stops reading; RSS grows < {FloodMemoryBound >> 20} MiB; another client served meanwhile",
        (t, log) => Flood(t, log),
        o => o.Contains("RSS bounded", StringComparison.Ordinal) && o.Contains("other client ok", StringComparison.Ordinal));

    /// <summary>The connection storm.</summary>
    public static readonly HostileCase StormCase = new(
        "300 connections at once (-e 8)",
        "at most -e greeted, the rest wait in the backlog or are refused; no crash",
        (t, log) => Storm(t, log),
        o => o.Contains("within -e", StringComparison.Ordinal));

    /// <summary>Every case, the idle one first (it runs alongside the rest); the flood and the storm come last.</summary>
    public static IReadOnlyList<HostileCase> AllCases { get; } = [IdleCase, .. HostileCases.All, FloodCase, StormCase];

    /// <summary>Runs every case against <paramref name="target"/>; the idle case runs on its own thread meanwhile.</summary>
    public static List<HostileOutcome> Run(HostileTarget target)
    {
        var idle = Task.Factory.StartNew(() => RunOne(IdleCase, target, normalClient: false), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var outcomes = new List<HostileOutcome>();
        foreach (var hostile in AllCases.Skip(1))
        {
            outcomes.Add(RunOne(hostile, target, normalClient: true));
        }
        var idleOutcome = idle.GetAwaiter().GetResult();
        outcomes.Insert(0, idleOutcome with { NormalClientProblem = target.NormalClientProblem() });
        return outcomes;
    }

    private static HostileOutcome RunOne(HostileCase hostile, HostileTarget target, bool normalClient)
    {
        var log = new List<string>();
        var clock = Stopwatch.StartNew();
        try
        {
            hostile.Probe(target, log);
        }
        catch (ProbeDroppedException e)
        {
            log.Add($"dropped ({e.Message})");
        }
        catch (ProbeSilentException e)
        {
            log.Add($"silent ({e.Message})");
        }
        catch (Exception e) when (e is InvalidOperationException or SocketException or OperationCanceledException)
        {
            log.Add($"protocol error: {e.GetType().Name}: {e.Message}");
        }
        clock.Stop();
        string? problem = normalClient ? target.NormalClientProblem() : null;
        return new HostileOutcome(hostile, string.Join("; ", log), problem, clock.Elapsed);
    }

    private static string IdleThroughDeadline(HostileTarget target)
    {
        using var c = HostileConnection.Connect(target);
        var clock = Stopwatch.StartNew();
        c.Receive(NbdHandshake.GreetingSize, "greeting");
        c.Timeout = IdleWait;
        try
        {
            c.Receive(1, "anything");
            return "server sent data to an idle client";
        }
        catch (ProbeDroppedException)
        {
            return $"dropped by the server after {clock.Elapsed.TotalSeconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)} s";
        }
        catch (ProbeSilentException)
        {
            return $"still connected after {IdleWait.TotalSeconds} s";
        }
    }

    private static void Flood(HostileTarget target, List<string> log)
    {
        long before = target.Server.ResidentBytes();
        using var c = HostileConnection.Connect(target);
        c.Go(target.Export);
        c.Socket.SendTimeout = 300;
        var batch = new byte[100 * NbdTransmission.RequestSize];
        ulong cookie = 1_000_000;
        int sent = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            // Until the server stops reading (the send times out with the socket buffers full), at most 2 s or 2M
            // requests (56 MiB of headers: more than loopback TCP buffers hold).
            while (clock.Elapsed < TimeSpan.FromSeconds(2) && sent < 2_000_000)
            {
                for (int i = 0; i < 100; i++)
                {
                    NbdTransmission.WriteRequest(batch.AsSpan(i * NbdTransmission.RequestSize), new NbdRequest(0, NbdCommand.Read, cookie++, 0, 1 << 20));
                }
                c.Socket.Send(batch);
                sent += 100;
            }
            log.Add($"all {sent} READs of 1 MiB sent in {clock.Elapsed.TotalSeconds:F1} s (server kept reading)");
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            log.Add($"server stopped reading after ~{sent} READs of 1 MiB");
        }
        catch (SocketException e)
        {
            log.Add($"dropped after ~{sent} READs ({e.SocketErrorCode})");
        }
        Thread.Sleep(300); // let the server fill whatever it buffers
        long after = target.Server.ResidentBytes();
        long growth = after - before;
        log.Add($"RSS {before >> 20} -> {after >> 20} MiB ({(growth < FloodMemoryBound ? "RSS bounded" : "RSS grew too much")})");
        string? other = target.NormalClientProblem();
        log.Add(other is null ? "other client ok" : $"other client: {other}");
    }

    private static void Storm(HostileTarget target, List<string> log)
    {
        const int Count = 300;
        var sockets = new List<Socket>();
        try
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            var attempts = new List<(Socket Socket, Task Connect)>();
            for (int i = 0; i < Count; i++)
            {
                var socket = target.SocketPath is not null
                    ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                    : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                sockets.Add(socket);
                EndPoint endPoint = target.SocketPath is not null ? new UnixDomainSocketEndPoint(target.SocketPath) : new IPEndPoint(IPAddress.Loopback, target.Port);
                attempts.Add((socket, socket.ConnectAsync(endPoint, cancel.Token).AsTask()));
            }
            try
            {
                Task.WaitAll([.. attempts.Select(a => a.Connect)], TimeSpan.FromSeconds(3));
            }
            catch (AggregateException)
            {
                // counted below
            }
            int connected = attempts.Count(a => a.Connect.IsCompletedSuccessfully);
            int refused = attempts.Count(a => a.Connect.IsFaulted && a.Connect.Exception!.InnerException is SocketException);
            int pending = Count - connected - refused;
            Thread.Sleep(300);
            int greeted = attempts.Count(a => a.Connect.IsCompletedSuccessfully && a.Socket.Available >= NbdHandshake.GreetingSize);
            // The idle case may hold one slot meanwhile; a server honouring -e greets at most -e at once.
            log.Add($"{connected} connected, {greeted} greeted ({(greeted <= HostileTarget.MaxClients ? "within -e" : "more than -e")}), {refused} refused, {pending} still connecting");
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
        Thread.Sleep(200); // the server works through the backlog of closed connections
    }
}
