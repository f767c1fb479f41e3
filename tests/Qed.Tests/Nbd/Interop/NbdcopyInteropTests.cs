using System.Diagnostics;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// nbdcopy against <c>qed serve</c> (NBD.md 7.2 #9, #16, 7.3 #25): both directions with <c>--flush</c>, four
/// connections with 64 requests each into an export started with <c>-e 4</c>, a copy killed half-way, and the
/// WRITE_ZEROES-while-allocating case that aborts qemu-nbd 7.2 (issue 9 point 2).
/// </summary>
public sealed class NbdcopyInteropTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Copies_both_ways_with_flush_and_compares_equal()
    {
        using var dir = new TempDirectory();
        string reference = InteropImages.Flatten(InteropImages.Layered(dir.File("src")), dir.File("ref.raw"));
        string image = InteropImages.EmptyQed(dir.Path, "disk.qed");
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-f", "qed", "-k", dir.File("s.sock"), image);

        InteropRun.Ok(qed, "nbdcopy", "--flush", reference, qed.Uri());
        InteropRun.Ok(qed, "nbdcopy", qed.Uri(), dir.File("back.raw"));
        Assert.True(InteropImages.SameContent(reference, dir.File("back.raw")), "nbdcopy export -> file differs from what was copied in");
        // The holes of the source stayed holes: nbdcopy sent zero requests, and the server kept them unallocated.
        string map = InteropRun.Ok("nbdinfo", "--map", "--totals", qed.Uri()).StdOut;
        output.WriteLine($"after nbdcopy in: {map}");
        Assert.Contains("10485760", map, StringComparison.Ordinal); // 10 MiB of data, as in the source

        await qed.StopCleanlyAsync();
        InteropImages.AssertChecksClean(image);
        Assert.Equal(Tools.Sha256OfFile(reference), Tools.QemuFlattenDigest(dir.Path, image));
    }

    [Fact]
    public async Task Four_connections_with_64_requests_each_copy_correctly()
    {
        using var dir = new TempDirectory();
        int seed = TestSeed.For(nameof(Four_connections_with_64_requests_each_copy_correctly));
        string source = InteropImages.PatternRaw(dir.File("pattern.raw"), 24L * 1024 * 1024, seed);
        string image = InteropImages.EmptyQed(dir.Path, "disk.qed", 24L * 1024 * 1024);
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-e", "4", "-f", "qed", "-k", dir.File("s.sock"), image);
        Assert.Equal(0, InteropRun.Raw("nbdinfo", "--can", "multi-conn", qed.Uri()).ExitCode);

        // -v prints the connection count nbdcopy settled on (it opens several only when CAN_MULTI_CONN is set).
        var copy = InteropRun.Ok(qed, "nbdcopy", "-v", "-C", "4", "-T", "4", "--requests", "64", "--flush", source, qed.Uri());
        string settings = copy.StdErr.Split('\n').First(line => line.StartsWith("nbdcopy: connections=", StringComparison.Ordinal));
        output.WriteLine(settings);
        Assert.StartsWith("nbdcopy: connections=4 requests=64 threads=4", settings, StringComparison.Ordinal);

        InteropRun.Ok(qed, "nbdcopy", "-C", "4", "-T", "4", qed.Uri(), dir.File("back.raw"));
        Assert.True(InteropImages.SameContent(source, dir.File("back.raw")), "multi-connection copy differs");
        await qed.StopCleanlyAsync();
        InteropImages.AssertChecksClean(image);
    }

    [Fact]
    public async Task A_copy_killed_half_way_leaves_the_server_serving()
    {
        using var dir = new TempDirectory();
        int seed = TestSeed.For(nameof(A_copy_killed_half_way_leaves_the_server_serving));
        string source = InteropImages.PatternRaw(dir.File("pattern.raw"), InteropImages.Size, seed);
        string image = InteropImages.EmptyQed(dir.Path, "disk.qed");
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-e", "2", "-f", "qed", "-k", dir.File("s.sock"), image);

        // nbdcopy reads its source from a pipe we keep open and fed: it cannot finish, so the kill lands mid-copy, with
        // requests on the wire, however fast the server is.
        var info = new ProcessStartInfo("nbdcopy") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardError = true, RedirectStandardOutput = true };
        info.ArgumentList.Add("-");
        info.ArgumentList.Add(qed.Uri());
        using var copy = Process.Start(info)!;
        var stderr = copy.StandardError.ReadToEndAsync();
        long fed = 0;
        var pump = Task.Run(async () =>
        {
            // Half the export at most (never past its end), and never EOF: the copy is still running when killed.
            var chunk = new byte[1 << 20];
            await using var data = File.OpenRead(source);
            try
            {
                while (Interlocked.Read(ref fed) < InteropImages.Size / 2)
                {
                    int read = await data.ReadAsync(chunk);
                    await copy.StandardInput.BaseStream.WriteAsync(chunk.AsMemory(0, read));
                    await copy.StandardInput.BaseStream.FlushAsync();
                    Interlocked.Add(ref fed, read);
                }
            }
            catch (IOException)
            {
                // the pipe broke: nbdcopy was killed
            }
        });
        try
        {
            var clock = Stopwatch.StartNew();
            while (Interlocked.Read(ref fed) < 8L << 20 && clock.Elapsed < TimeSpan.FromSeconds(10) && !copy.HasExited)
            {
                await Task.Delay(10);
            }
            if (copy.HasExited)
            {
                Assert.Fail($"nbdcopy ended before it was killed (exit {copy.ExitCode}): {await stderr.WaitAsync(TimeSpan.FromSeconds(5))}");
            }
            Assert.True(Interlocked.Read(ref fed) >= 8L << 20, "nbdcopy took less than 8 MiB in 10 s");
            copy.Kill();
            Assert.True(copy.WaitForExit(10_000));
            await pump.WaitAsync(TimeSpan.FromSeconds(10));
            output.WriteLine($"nbdcopy killed after {Interlocked.Read(ref fed) >> 20} MiB fed in {clock.ElapsedMilliseconds} ms");
        }
        finally
        {
            if (!copy.HasExited)
            {
                copy.Kill();
                copy.WaitForExit(10_000);
            }
        }

        Assert.Equal(InteropImages.SizeText, InteropRun.Ok(qed, "nbdinfo", "--size", qed.Uri()).StdOut.Trim());
        InteropRun.Ok(qed, "nbdcopy", "--flush", source, qed.Uri());
        InteropRun.Ok(qed, "nbdcopy", qed.Uri(), dir.File("back.raw"));
        Assert.True(InteropImages.SameContent(source, dir.File("back.raw")), "copy after the killed one differs");
        await qed.StopCleanlyAsync();
        InteropImages.AssertChecksClean(image);
    }

    /// <summary>
    /// A 24 MiB sparse raw file with 4 KiB of data every 192 KiB: nbdcopy writes each data block and sends a
    /// WRITE_ZEROES for the hole after it, starting 4 KiB into a 64 KiB cluster and spanning whole clusters, while the
    /// neighbouring allocating writes are in flight. qemu-nbd 7.2 aborts on it (qed.c: <c>s->allocating_acb == NULL</c>).
    /// </summary>
    [Fact]
    public async Task Zeroes_part_way_into_clusters_during_allocating_writes_do_not_crash_us()
    {
        using var dir = new TempDirectory();
        const long Size = 24L * 1024 * 1024;
        string source = dir.File("sparse.raw");
        using (var stream = new FileStream(source, FileMode.Create, FileAccess.Write))
        {
            stream.SetLength(Size);
            var data = new byte[4096];
            for (long at = 0; at < Size; at += 192 * 1024)
            {
                Array.Fill(data, (byte)(0x40 + (at / (192 * 1024) % 64)));
                stream.Position = at;
                stream.Write(data);
            }
        }

        string qemuImage = InteropImages.EmptyQed(dir.File("qemu"), "disk.qed", Size);
        await using (var qemu = NbdServerProcess.Start(NbdServerKind.QemuNbd, dir.Path, "-f", "qed", "-k", dir.File("qemu.sock"), qemuImage))
        {
            var copy = InteropRun.Raw("nbdcopy", source, qemu.Uri());
            int exit = await qemu.WaitForExitAsync(TimeSpan.FromSeconds(20));
            bool aborted = qemu.StdErr.Contains("allocating_acb == NULL", StringComparison.Ordinal);
            output.WriteLine($"qemu-nbd: exit {exit}, {(aborted ? "aborted on the allocating_acb assertion" : "did not abort")}; nbdcopy exit {copy.ExitCode}; {qemu.StdErr.Trim()}");
        }

        string image = InteropImages.EmptyQed(dir.File("qed"), "disk.qed", Size);
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-f", "qed", "-k", dir.File("qed.sock"), image);
        InteropRun.Ok(qed, "nbdcopy", source, qed.Uri());
        // Without -t the server leaves with its last client, cleanly.
        Assert.Equal(0, await qed.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        InteropImages.AssertChecksClean(image);
        var compare = InteropRun.Raw("qemu-img", "compare", "-f", "raw", "-F", "qed", source, image);
        Assert.True(compare.ExitCode == 0, $"copy differs: {compare}");
    }
}
