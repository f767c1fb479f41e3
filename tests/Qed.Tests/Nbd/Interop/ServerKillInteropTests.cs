using System.Diagnostics;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// <c>qed serve</c> killed with SIGKILL in the middle of writes (issue 9 point 6): a client writes known data and
/// flushes, then keeps 16 allocating writes in flight elsewhere on the disk; the server is killed under it. Afterwards
/// <c>qemu-img check</c> may report leaks (clusters allocated for writes never acknowledged) but nothing else, and the
/// flushed data reads back intact through qemu and through a restarted server.
/// </summary>
public sealed class ServerKillInteropTests(ITestOutputHelper output)
{
    // Own script. argv: URI, seed, file for the flushed bytes. Prints "flushed", then "writing" once 32 writes of the
    // second phase completed, and keeps writing until the connection dies.
    private const string Writer = """
        import random, sys
        import nbd

        uri, seed, flushed_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        MiB = 1 << 20
        rnd = random.Random(seed)
        h = nbd.NBD()
        h.connect_uri(uri)
        data = rnd.randbytes(8 * MiB)
        with open(flushed_path, 'wb') as f:
            f.write(data)
        for at in range(0, len(data), MiB):
            h.pwrite(data[at:at + MiB], at)
        h.flush()
        print('flushed', flush=True)
        done = 0
        announced = False
        def completed(err):
            global done
            done += 1
            return 1
        while True:
            length = rnd.choice([4096, 65536, 262144, MiB])
            offset = rnd.randrange(16 * MiB, 64 * MiB - length, 4096)
            h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(rnd.randbytes(length))), offset, completion=completed)
            while h.aio_in_flight() >= 16:
                h.poll(-1)
            if done >= 32 and not announced:
                print('writing', flush=True)
                announced = True
        """;

    [Fact]
    public async Task Sigkill_during_writes_leaves_a_checkable_image_with_the_flushed_data()
    {
        using var dir = new TempDirectory();
        int seed = TestSeed.For(nameof(Sigkill_during_writes_leaves_a_checkable_image_with_the_flushed_data));
        File.WriteAllText(dir.File("writer.py"), Writer);
        string image = InteropImages.EmptyQed(dir.Path, "disk.qed");
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-f", "qed", "-k", dir.File("s.sock"), image);

        var info = new ProcessStartInfo(InteropRun.SystemPython) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in new[] { dir.File("writer.py"), qed.Uri(), seed.ToString(System.Globalization.CultureInfo.InvariantCulture), dir.File("flushed.bin") })
        {
            info.ArgumentList.Add(argument);
        }
        using var writer = Process.Start(info)!;
        var writerErrors = writer.StandardError.ReadToEndAsync();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            Assert.Equal("flushed", await writer.StandardOutput.ReadLineAsync(timeout.Token));
            Assert.Equal("writing", await writer.StandardOutput.ReadLineAsync(timeout.Token));
            qed.Kill();
            output.WriteLine($"server killed with writes in flight; server stderr: {qed.StdErr}");
            Assert.True(writer.WaitForExit(10_000), "the writer did not notice the server's death");
            Assert.NotEqual(0, writer.ExitCode);
        }
        finally
        {
            if (!writer.HasExited)
            {
                writer.Kill();
                writer.WaitForExit(5_000);
            }
        }
        output.WriteLine($"writer: {(await writerErrors).Trim().Split('\n').LastOrDefault()}");

        var report = InteropImages.AssertChecksClean(image, leaksAllowed: true);
        output.WriteLine($"qemu-img check after SIGKILL: {report.Leaks} leaked clusters, exit {report.ExitCode}");

        // The flushed 8 MiB through qemu, then through a restarted server.
        byte[] flushed = File.ReadAllBytes(dir.File("flushed.bin"));
        string raw = dir.File("after.raw");
        Tools.QemuImg(dir.Path, "convert", "-f", "qed", "-O", "raw", image, raw);
        Assert.True(ReadPrefix(raw, flushed.Length).AsSpan().SequenceEqual(flushed), "flushed data lost (qemu-img convert of the killed image)");

        await using var again = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-r", "-f", "qed", "-k", dir.File("again.sock"), image);
        InteropRun.Ok(again, "nbdcopy", again.Uri(), dir.File("again.raw"));
        Assert.True(ReadPrefix(dir.File("again.raw"), flushed.Length).AsSpan().SequenceEqual(flushed), "flushed data lost (read through a restarted server)");
        await again.StopCleanlyAsync();
    }

    private static byte[] ReadPrefix(string path, int length)
    {
        var bytes = new byte[length];
        using var stream = File.OpenRead(path);
        stream.ReadExactly(bytes);
        return bytes;
    }
}
