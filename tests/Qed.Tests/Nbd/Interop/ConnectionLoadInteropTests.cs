using System.Diagnostics;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// 100 <c>nbdinfo --size</c> at once against <c>qed serve -e 8 -t</c> (NBD.md 7.3 #24): eight are served at a time,
/// the others wait in the listen backlog; every one succeeds or is refused cleanly, the server keeps running and its
/// memory returns near where it was.
/// </summary>
public sealed class ConnectionLoadInteropTests(ITestOutputHelper output)
{
    private const int Clients = 100;

    [Fact]
    public async Task Hundred_parallel_nbdinfo_size_all_succeed_or_are_refused_cleanly()
    {
        using var dir = new TempDirectory();
        string image = InteropImages.EmptyQed(dir.Path, "disk.qed");
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, "-t", "-e", "8", "-f", "qed", "-k", dir.File("s.sock"), image);
        InteropRun.Ok(qed, "nbdinfo", "--size", qed.Uri()); // one client first, so "before" is the memory of a server that has served
        long before = qed.ResidentBytes();

        var clock = Stopwatch.StartNew();
        // All started before any is awaited, and awaited without blocking a pool thread each (100 blocked threads would
        // make the pool grow one thread at a time and turn this into a 20 s test).
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var runs = Enumerable.Range(0, Clients).Select(_ => RunAsync(qed.Uri(), timeout.Token)).ToArray();
        ToolResult[] results = await Task.WhenAll(runs);
        clock.Stop();
        int served = results.Count(r => r.ExitCode == 0 && r.StdOut.Trim() == InteropImages.SizeText);
        var refused = results.Where(r => r.ExitCode != 0).ToArray();
        long after = qed.ResidentBytes();
        output.WriteLine($"{Clients} parallel nbdinfo --size: {served} served, {refused.Length} refused, {clock.ElapsedMilliseconds} ms; server RSS {before / 1024} KiB before, {after / 1024} KiB after");
        foreach (var refusal in refused.Take(3))
        {
            output.WriteLine($"refused: {refusal.StdErr.Trim()}");
        }

        Assert.Equal(Clients, results.Length);
        Assert.All(results, r => Assert.True(r.ExitCode == 0 ? r.StdOut.Trim() == InteropImages.SizeText : r.StdErr.Contains("nbdinfo", StringComparison.Ordinal), r.ToString()));
        Assert.True(served > 0, "no client was served");
        Assert.False(qed.HasExited, qed.StdErr);
        Assert.Equal(InteropImages.SizeText, InteropRun.Ok(qed, "nbdinfo", "--size", qed.Uri()).StdOut.Trim());
        Assert.True(after < before + (32L << 20), $"server RSS grew from {before} to {after} bytes serving {Clients} short clients");
        await qed.StopCleanlyAsync();
        InteropImages.AssertChecksClean(image);
    }

    private static async Task<ToolResult> RunAsync(string uri, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo("nbdinfo") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("--size");
        info.ArgumentList.Add(uri);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            await process.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw new TimeoutException($"nbdinfo --size {uri} did not finish");
        }
        return new ToolResult(process.ExitCode, await stdout, await stderr);
    }
}
