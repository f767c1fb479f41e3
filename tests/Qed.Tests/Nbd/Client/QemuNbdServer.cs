using System.Diagnostics;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Client;

/// <summary>qemu-nbd serving one image on a unix socket (the oracle server of the client tests); killed on dispose.</summary>
internal sealed class QemuNbdServer : IDisposable
{
    private static readonly TimeSpan s_startTimeout = TimeSpan.FromSeconds(15);
    private readonly Process _process;

    private QemuNbdServer(Process process, string socketPath)
    {
        _process = process;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    /// <summary>The URI of export <paramref name="name"/>.</summary>
    public string Uri(string name = "") => $"nbd+unix:///{Escape(name)}?socket={SocketPath}";

    /// <summary>Starts <c>qemu-nbd -t -e 8 -k SOCKET [ARGS] IMAGE</c> and waits until the socket exists.</summary>
    public static QemuNbdServer Start(string directory, string image, params string[] arguments)
    {
        string socketPath = Path.Combine(directory, "qemu-nbd-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        var info = new ProcessStartInfo("qemu-nbd") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string argument in (string[])["-t", "-e", "8", "-k", socketPath, .. arguments, image])
        {
            info.ArgumentList.Add(argument);
        }
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start qemu-nbd");
        var server = new QemuNbdServer(process, socketPath);
        try
        {
            UnixSocketListening.WaitFor(socketPath, process, s_startTimeout);
        }
        catch
        {
            server.Dispose();
            throw;
        }
        return server;
    }

    /// <summary>Starts <c>qemu-nbd -t -e 8 -b ADDRESS -p PORT [ARGS] IMAGE</c> on a free port and waits until it accepts connections.</summary>
    public static (QemuNbdServer Server, int Port) StartTcp(string image, System.Net.IPAddress address, params string[] arguments)
    {
        using (var probe = new System.Net.Sockets.Socket(address.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            probe.Bind(new System.Net.IPEndPoint(address, 0));
            arguments = ["-p", ((System.Net.IPEndPoint)probe.LocalEndPoint!).Port.ToString(System.Globalization.CultureInfo.InvariantCulture), .. arguments];
        }
        int port = int.Parse(arguments[1], System.Globalization.CultureInfo.InvariantCulture);
        var info = new ProcessStartInfo("qemu-nbd") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string argument in (string[])["-t", "-e", "8", "-b", address.ToString(), .. arguments, image])
        {
            info.ArgumentList.Add(argument);
        }
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start qemu-nbd");
        var server = new QemuNbdServer(process, "");
        var clock = Stopwatch.StartNew();
        while (true)
        {
            using var socket = new System.Net.Sockets.Socket(address.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            try
            {
                // A connection that is accepted and dropped costs qemu-nbd nothing (-t keeps it serving).
                socket.Connect(new System.Net.IPEndPoint(address, port));
                return (server, port);
            }
            catch (System.Net.Sockets.SocketException) when (!process.HasExited && clock.Elapsed < s_startTimeout)
            {
                Thread.Sleep(10);
            }
            catch (System.Net.Sockets.SocketException)
            {
                string error = process.HasExited ? process.StandardError.ReadToEnd() : "no answer";
                server.Dispose();
                throw new InvalidOperationException($"qemu-nbd on {address} port {port} did not start: {error}");
            }
        }
    }

    /// <summary>Stops the server (SIGTERM, then SIGKILL if it lingers) and waits for it.</summary>
    public void Dispose()
    {
        if (!_process.HasExited)
        {
            // SIGTERM: qemu-nbd flushes and closes the image cleanly.
            _ = Kill(_process.Id, SigTerm);
            if (!_process.WaitForExit(5000))
            {
                _process.Kill();
                _process.WaitForExit();
            }
        }
        _process.Dispose();
        if (SocketPath.Length > 0)
        {
            File.Delete(SocketPath);
        }
    }

    private const int SigTerm = 15;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    private static string Escape(string name) => System.Uri.EscapeDataString(name).Replace("%2F", "/", StringComparison.Ordinal);
}
