using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// The real <c>qed serve</c> process from start to exit: signals give a clean shutdown (exit 0, socket and pid file
/// removed, image closed with its need-check bit clear), without <c>-t</c> it leaves with its last client, with it it
/// stays; <c>--fork</c> returns once the detached child listens; <c>-r</c> opens the image read-only; TCP on IPv4 and IPv6.
/// </summary>
public sealed partial class ServeLifecycleTests : IDisposable
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(15);
    private readonly TempDirectory _dir = new();
    private readonly string _image;

    public ServeLifecycleTests()
    {
        _image = _dir.File("disk.qed");
        QedImage.Create(_image, new QedCreateOptions { Size = 4 << 20 });
    }

    public void Dispose() => _dir.Dispose();

    private string SocketPath => _dir.File("s.sock");

    [Theory]
    [InlineData(ServeProcess.SigTerm)]
    [InlineData(ServeProcess.SigInt)]
    [InlineData(ServeProcess.SigHup)]
    public void A_signal_shuts_down_cleanly(int signal)
    {
        using var server = ServeProcess.Start(_dir.Path, "-t", "-f", "qed", "-k", SocketPath, _image);
        Assert.True(File.Exists(SocketPath));
        Assert.Equal(server.Id, ServeProcess.ReadPid(server.PidFile!));
        using (var client = ServeProcess.ConnectUnix(SocketPath))
        {
        }

        server.Signal(signal);
        Assert.Equal(0, server.WaitForExit(ExitTimeout));
        Assert.Equal("", server.StdErr);
        AssertClosedCleanly(server.PidFile);
    }

    [Fact]
    public void Without_persistent_the_server_exits_when_its_last_client_leaves()
    {
        using var server = ServeProcess.Start(_dir.Path, "-k", SocketPath, _image);
        Assert.True(server.StillRunningAfter(TimeSpan.FromMilliseconds(200)), "exited before any client came");
        using (var client = ServeProcess.ConnectUnix(SocketPath))
        {
        }
        Assert.Equal(0, server.WaitForExit(ExitTimeout));
        AssertClosedCleanly(server.PidFile);
    }

    [Fact]
    public void With_persistent_the_server_outlives_its_clients()
    {
        using var server = ServeProcess.Start(_dir.Path, "--persistent", "-e", "2", "-k", SocketPath, _image);
        for (int i = 0; i < 3; i++)
        {
            using var client = ServeProcess.ConnectUnix(SocketPath);
            client.Shutdown(SocketShutdown.Send);
            // The server closes its end once it is done with the client (the handshake ends at our EOF at the latest).
            ReadUntilClosed(client);
        }
        Assert.True(server.StillRunningAfter(TimeSpan.FromMilliseconds(300)), server.StdErr);
        server.Signal(ServeProcess.SigTerm);
        Assert.Equal(0, server.WaitForExit(ExitTimeout));
        AssertClosedCleanly(server.PidFile);
    }

    [Fact]
    public void Fork_returns_once_the_detached_child_listens()
    {
        string pidFile = _dir.File("forked.pid");
        try
        {
            var result = ServeProcess.RunToExit(_dir.Path, ExitTimeout, "--fork", "-t", "--pid-file", pidFile, "-k", SocketPath, _image);
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Equal("", result.StdErr + result.StdOut);

            // Listening already: the socket and pid file exist the moment the parent returns.
            Assert.True(File.Exists(SocketPath));
            int child = ServeProcess.ReadPid(pidFile);
            Assert.True(ServeProcess.Exists(child));
            string stat = File.ReadAllText($"/proc/{child}/stat");
            Assert.Equal(child.ToString(System.Globalization.CultureInfo.InvariantCulture), ServeProcess.StatField(stat, 6)); // its own session (setsid)
            using (var client = ServeProcess.ConnectUnix(SocketPath))
            {
            }
            Assert.True(ServeProcess.Exists(child), "-t: the server must outlive its client");
            ServeProcess.Send(child, ServeProcess.SigTerm);
            Assert.True(ServeProcess.WaitUntilGone(child, ExitTimeout), "the forked server did not exit on SIGTERM");
        }
        finally
        {
            // Never leave a daemon behind, whatever failed.
            if (File.Exists(pidFile) && ServeProcess.ReadPid(pidFile) is int pid && ServeProcess.Exists(pid))
            {
                ServeProcess.Send(pid, 9);
            }
        }
        AssertClosedCleanly(pidFile);
    }

    [Fact]
    public void Fork_reports_the_childs_failure_to_the_caller()
    {
        var result = ServeProcess.RunToExit(_dir.Path, ExitTimeout, "--fork", "--pid-file", _dir.File("x.pid"), "-k", SocketPath, "-f", "qed", _dir.File("missing.qed"));
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"qed: Could not open '{_dir.File("missing.qed")}': No such file or directory", result.StdErr.TrimEnd('\n'));
        Assert.False(File.Exists(SocketPath));
        Assert.False(File.Exists(_dir.File("x.pid")));
    }

    [Fact]
    public void A_stale_socket_is_replaced_and_a_live_one_is_left_alone()
    {
        // A server killed with SIGKILL leaves its socket file; the next server takes the path over.
        using (var killed = ServeProcess.Start(_dir.Path, "-t", "-k", SocketPath, _image))
        {
            ServeProcess.Send(killed.Id, 9);
            killed.WaitForExit(ExitTimeout);
        }
        Assert.True(File.Exists(SocketPath));
        using var live = ServeProcess.Start(_dir.Path, "-k", SocketPath, _image);

        // A second server on the same path is refused, and the live one (no -t) is not disturbed: nothing connected.
        QedImage.Create(_dir.File("other.qed"), new QedCreateOptions { Size = 1 << 20 });
        var second = QedProcess.Run(_dir.Path, ExitTimeout, "serve", "-k", SocketPath, _dir.File("other.qed"));
        Assert.Equal(1, second.ExitCode);
        Assert.Equal($"qed: Failed to bind socket to {SocketPath}: Address already in use", second.StdErr.TrimEnd('\n'));
        Assert.True(live.StillRunningAfter(TimeSpan.FromMilliseconds(200)), live.StdErr);
        Assert.True(File.Exists(SocketPath));
        live.Signal(ServeProcess.SigTerm);
        Assert.Equal(0, live.WaitForExit(ExitTimeout));
        Assert.False(File.Exists(SocketPath));
    }

    [Fact]
    public void Read_only_takes_only_the_read_locks()
    {
        // Served writable, the image refuses every other user; with -r, other readers are welcome and writers are not.
        using (var writable = ServeProcess.Start(_dir.Path, "-t", "-k", SocketPath, _image))
        {
            Assert.NotEqual(0, Tools.Run("qemu-io", ["-r", "-f", "qed", "-c", "read 0 4k", _image], _dir.Path, ExitTimeout).ExitCode);
            writable.Signal(ServeProcess.SigTerm);
            Assert.Equal(0, writable.WaitForExit(ExitTimeout));
        }
        using var readOnly = ServeProcess.Start(_dir.Path, "-t", "-r", "-k", SocketPath, _image);
        var read = Tools.Run("qemu-io", ["-r", "-f", "qed", "-c", "read 0 4k", _image], _dir.Path, ExitTimeout);
        Assert.True(read.ExitCode == 0, read.ToString());
        var write = Tools.Run("qemu-io", ["-f", "qed", "-c", "write 0 4k", _image], _dir.Path, ExitTimeout);
        Assert.NotEqual(0, write.ExitCode);
        Assert.Contains("\"write\" lock", write.StdErr, StringComparison.Ordinal);
        readOnly.Signal(ServeProcess.SigTerm);
        Assert.Equal(0, readOnly.WaitForExit(ExitTimeout));
        AssertClosedCleanly(readOnly.PidFile);
    }

    [Theory]
    [InlineData("127.0.0.1", "127.0.0.1")]
    [InlineData("::1", "::1")]
    [InlineData("::", "127.0.0.1")]
    public void Tcp_listens_where_bind_says(string bind, string connectTo)
    {
        if (bind.Contains(':', StringComparison.Ordinal) && !Socket.OSSupportsIPv6)
        {
            Assert.Fail("IPv6 is not available on this machine");
        }
        // Port 0: the kernel picks one, which -v reports.
        using var server = ServeProcess.Start(_dir.Path, "-t", "-v", "-b", bind, "-p", "0", _image);
        var match = server.WaitForStderr(ListeningLine(), TimeSpan.FromSeconds(10));
        int port = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        using (var client = new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 5000 })
        {
            client.Connect(new IPEndPoint(IPAddress.Parse(connectTo), port));
        }
        server.Signal(ServeProcess.SigTerm);
        Assert.Equal(0, server.WaitForExit(ExitTimeout));
        AssertClosedCleanly(server.PidFile);
    }

    /// <summary>Exited cleanly: no socket, no pid file, qemu-img check clean, the need-check bit clear.</summary>
    [Fact]
    public async Task Handshake_limit_and_idle_timeout_drop_silent_clients()
    {
        using var server = ServeProcess.Start(_dir.Path, "-t", "-e", "4", "--handshake-limit=1", "--idle-timeout=1", "-k", SocketPath, _image);

        // A client that reads the greeting and says nothing more is dropped after the handshake limit.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using (var silent = ServeProcess.ConnectUnix(SocketPath))
        {
            ReadUntilClosed(silent);
        }
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.8), TimeSpan.FromSeconds(4.5));

        // A negotiated client with nothing in flight is dropped after the idle timeout; one that keeps asking is not.
        await using var idle = await Qed.Nbd.Client.NbdClient.ConnectAsync($"nbd+unix:///?socket={SocketPath}", CancellationToken.None);
        await using var busy = await Qed.Nbd.Client.NbdClient.ConnectAsync($"nbd+unix:///?socket={SocketPath}", CancellationToken.None);
        var buffer = new byte[512];
        for (int i = 0; i < 10; i++)
        {
            await busy.ReadAsync(buffer, 0);
            await Task.Delay(250);
        }

        await Assert.ThrowsAnyAsync<Exception>(async () => await idle.ReadAsync(buffer, 0));
        await busy.ReadAsync(buffer, 0);

        server.Signal(ServeProcess.SigTerm);
        Assert.Equal(0, server.WaitForExit(ExitTimeout));
        AssertClosedCleanly(server.PidFile);
    }

    private void AssertClosedCleanly(string? pidFile)
    {
        Assert.False(File.Exists(SocketPath), "the unix socket was left behind");
        if (pidFile is not null)
        {
            Assert.False(File.Exists(pidFile), "the pid file was left behind");
        }
        var check = Tools.QemuImgRaw(_dir.Path, "check", "-f", "qed", _image);
        Assert.True(check.ExitCode == 0, check.ToString());
        Assert.Equal(0UL, NeedCheckBit(_image));
    }

    private static ulong NeedCheckBit(string image)
    {
        Span<byte> features = stackalloc byte[8];
        using var stream = File.OpenRead(image);
        stream.Position = 16;
        stream.ReadExactly(features);
        return BinaryPrimitives.ReadUInt64LittleEndian(features) & 0x2;
    }

    /// <summary>Reads until the server closes the connection (the socket's receive timeout fails the test otherwise).</summary>
    private static void ReadUntilClosed(Socket client)
    {
        var buffer = new byte[4096];
        while (client.Receive(buffer) > 0)
        {
        }
    }

    [GeneratedRegex(@"^qed: serving '.*' on .*:(\d+)$", RegexOptions.Multiline)]
    private static partial Regex ListeningLine();
}
