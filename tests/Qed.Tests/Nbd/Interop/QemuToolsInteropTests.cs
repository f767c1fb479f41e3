using System.Diagnostics;
using System.Globalization;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// qemu's tools as NBD clients of <c>qed serve</c> over <c>nbd+unix://</c> and TCP (NBD.md 7.2 #10, #12, #14, #15, #17,
/// 7.3 #23): qemu-img convert from and into the export, qemu-img compare, qemu-img map (byte-identical to the same
/// command against qemu-nbd), qemu-io's request kinds with pattern checks, and qemu-img bench at depth 2 over TCP.
/// </summary>
public sealed class QemuToolsInteropTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Convert_from_and_into_the_export_and_compare()
    {
        using var dir = new TempDirectory();
        string layered = InteropImages.Layered(dir.File("src"));
        string reference = InteropImages.Flatten(layered, dir.File("ref.raw"));
        await using (var source = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-r", "-f", "qed", "-k", dir.File("src.sock"), layered))
        {
            InteropRun.Ok(source, "qemu-img", "convert", "-f", "raw", "-O", "raw", source.Uri(), dir.File("out.raw"));
            Assert.True(InteropImages.SameContent(reference, dir.File("out.raw")), "qemu-img convert from the export differs");
            string compare = InteropRun.Ok(source, "qemu-img", "compare", "-f", "raw", "-F", "raw", reference, source.Uri()).StdOut;
            Assert.Contains("Images are identical.", compare, StringComparison.Ordinal);
            await source.StopCleanlyAsync();
        }

        string image = InteropImages.EmptyQed(dir.Path, "disk.qed");
        await using var target = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-f", "qed", "-k", dir.File("dst.sock"), image);
        InteropRun.Ok(target, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", reference, target.Uri());
        Assert.Contains("Images are identical.", InteropRun.Ok(target, "qemu-img", "compare", "-f", "raw", "-F", "raw", reference, target.Uri()).StdOut, StringComparison.Ordinal);
        await target.StopCleanlyAsync();
        InteropImages.AssertChecksClean(image);
        Assert.Equal(Tools.Sha256OfFile(reference), Tools.QemuFlattenDigest(dir.Path, image));
    }

    [Fact]
    public async Task Qemu_img_map_json_is_byte_identical_to_qemu_nbd()
    {
        using var dir = new TempDirectory();
        string ours = InteropImages.Layered(dir.File("qed"));
        string theirs = InteropImages.Layered(dir.File("qemu"));
        string[] Arguments(string socket, string image) => ["-t", "-r", "-f", "qed", "-x", "ro", "-k", socket, image];
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, Arguments(dir.File("qed.sock"), ours));
        await using var qemu = NbdServerProcess.Start(NbdServerKind.QemuNbd, dir.Path, Arguments(dir.File("qemu.sock"), theirs));
        string ourMap = InteropRun.Ok(qed, "qemu-img", "map", "--output=json", qed.Uri("ro")).StdOut;
        string theirMap = InteropRun.Ok(qemu, "qemu-img", "map", "--output=json", qemu.Uri("ro")).StdOut;
        output.WriteLine(ourMap);
        Assert.Equal(theirMap, ourMap);
        Assert.Equal(6, ourMap.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        await qed.StopCleanlyAsync();
        await qemu.StopCleanlyAsync();
    }

    [Fact]
    public async Task Qemu_io_requests_with_patterns_and_unaligned_writes()
    {
        using var dir = new TempDirectory();
        string image = InteropImages.EmptyQed(dir.Path, "disk.qed");
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-f", "qed", "-k", dir.File("s.sock"), image);
        // qemu-io's default cache mode puts FUA on every write and zero request; write -z is WRITE_ZEROES+NO_HOLE,
        // write -z -u may trim, discard is TRIM.
        string[] commands =
        [
            "write -P 0xa5 1M 64k", "read -P 0xa5 1M 64k",
            "write -P 0x5a 3M 1M", "write -z 3M 1M", "read -P 0 3M 1M",
            "write -P 0x3c 5M 256k", "write -z -u 5M 128k", "read -P 0 5M 128k", "read -P 0x3c 5248k 128k",
            "write -P 0x77 6M 1M", "discard 6M 1M",
            "flush",
            "write -P 7 513 1000", "read -P 7 513 1000", "read -P 0 0 513", "read -P 0 1513 535",
        ];
        var arguments = new List<string> { "-f", "raw" };
        foreach (string command in commands)
        {
            arguments.Add("-c");
            arguments.Add(command);
        }
        arguments.Add(qed.Uri());
        var result = InteropRun.Ok(qed, "qemu-io", [.. arguments]);
        output.WriteLine(result.StdOut);
        Assert.DoesNotContain("failed", result.StdOut, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(commands.Length - 1, result.StdOut.Split('\n').Count(line => line.StartsWith("wrote ", StringComparison.Ordinal) || line.StartsWith("read ", StringComparison.Ordinal) || line.StartsWith("discard ", StringComparison.Ordinal)));

        await qed.StopCleanlyAsync();
        InteropImages.AssertChecksClean(image);
        // The image as qemu reads it directly: what the client wrote (the discarded range is not checked: TRIM is advisory).
        Tools.QemuIo(dir.Path, "qed", image, "read -P 0xa5 1M 64k", "read -P 0 3M 1M", "read -P 0 5M 128k", "read -P 0x3c 5248k 128k", "read -P 7 513 1000");
    }

    [Fact]
    public async Task Qemu_img_bench_at_depth_2_over_tcp_does_not_stall()
    {
        using var dir = new TempDirectory();
        string image = InteropImages.EmptyQed(dir.Path, "disk.qed");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x42 0 8M");
        int port = NbdServerProcess.FreeTcpPort();
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-f", "qed", "-b", "127.0.0.1", "-p", port.ToString(CultureInfo.InvariantCulture), image);
        // qemu-nbd 7.2 stalls 4-20 ms per request here (NBD.md 8.4): 2000 requests would take 10-40 s; unstalled, well under 1 s.
        var clock = Stopwatch.StartNew();
        var bench = Tools.Run("qemu-img", ["bench", "-f", "raw", "-c", "2000", "-d", "2", "-s", "4096", "-S", "4096", qed.Uri()], timeout: TimeSpan.FromSeconds(15));
        clock.Stop();
        Assert.True(bench.ExitCode == 0, $"qemu-img bench: {bench}\nserver: {qed.StdErr}");
        output.WriteLine($"qemu-img bench -c 2000 -d 2 over TCP: {clock.Elapsed.TotalMilliseconds:F0} ms\n{bench.StdOut}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"2000 requests at depth 2 over TCP took {clock.Elapsed}");
        await qed.StopCleanlyAsync();
    }
}
