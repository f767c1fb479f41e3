using System.Diagnostics;
using Qed.Backing;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Cli;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash;

/// <summary>
/// A commit killed at every change it makes to its files (each write, write-zeroes, length change and flush of the base
/// and the top, in turn; each write also torn in half; and each as a power cut that also loses every change not yet
/// flushed) loses nothing: the top still reads what it read before (digest of
/// <c>qemu-img convert</c>), <c>qemu-img check</c> finds no corruption in either file (leaks are allowed: a kill may
/// strand clusters, never an entry pointing at garbage), and committing again completes, empties the top and leaves
/// both files check-clean.
/// </summary>
/// <remarks>
/// An unkilled run first counts the changes, so the killed runs cover exactly that range, and each must have died
/// (the death is asserted, and the commit must have failed with it).
/// </remarks>
public sealed class CommitCrashTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    [InlineData(false, true)]
    public async Task A_commit_killed_at_any_change_loses_nothing(bool rawBase, bool useAsync)
    {
        string mode = $"{(rawBase ? "raw" : "qed")} base, async={useAsync}";
        var clock = Stopwatch.StartNew();
        string template = Path.Combine(_dir.Path, "template");
        Directory.CreateDirectory(template);
        string baseName = rawBase ? "b.raw" : "b.qed";
        string baseFormat = rawBase ? "raw" : "qed";
        // The base is shorter than the top (it grows), the top has data over base data, a zero cluster over base data, a
        // partial cluster and data past the base's end, under two L2 tables.
        if (rawBase)
        {
            Tools.QemuImg(template, "create", "-q", "-f", "raw", Path.Combine(template, baseName), "1M");
        }
        else
        {
            Tools.QemuImg(template, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", Path.Combine(template, baseName), "1M");
        }
        Tools.QemuIo(template, baseFormat, Path.Combine(template, baseName), "write -P 7 0 1M");
        Tools.QemuImg(template, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", baseName, "-F", baseFormat, Path.Combine(template, "o.qed"), "8M");
        Tools.QemuIo(template, "qed", Path.Combine(template, "o.qed"), "write -P 1 0 8k", "write -z 64k 8k", "write -P 2 100k 1k", "write -P 3 2M 12k", "write -P 4 5M 4k");
        string digest = Tools.QemuFlattenDigest(template, Path.Combine(template, "o.qed"));

        // The census: an unkilled commit, counting its changes.
        var census = new DyingProcess(0, tear: false);
        string whole = Copy(template, "census");
        await CommitAsync(whole, census, useAsync);
        int changes = census.Changes;
        Assert.True(changes >= 6, $"{mode}: the commit made only {changes} changes");
        Assert.Null(census.Injected);
        AssertIntact(whole, baseName, baseFormat, digest, emptied: true);

        int cases = 0, died = 0;
        foreach (var (tear, powerCut) in new[] { (false, false), (true, false), (false, true) })
        {
            for (int at = 1; at <= changes; at++)
            {
                cases++;
                string dir = Copy(template, $"{(tear ? "tear" : powerCut ? "cut" : "stop")}{at}");
                var process = new DyingProcess(at, tear, powerCut);
                var failure = await Record(() => CommitAsync(dir, process, useAsync));
                Assert.True(process.Injected is not null, $"{mode}: the kill at change {at} never happened");
                Assert.True(failure is not null && CausedBy(failure, process.Injected), $"{mode}: killed at {process.DiedAt}, the commit reported {failure?.ToString() ?? "success"}");
                died++;

                string context = $"{mode}, {(powerCut ? "power cut" : "killed")} at {process.DiedAt}{(tear ? " (torn)" : "")}";
                Assert.True(digest == Tools.QemuFlattenDigest(dir, Path.Combine(dir, "o.qed")), $"{context}: the top no longer reads the same");
                AssertNoCorruption(dir, "o.qed", context);
                // A QED base without a backing file may be left with its need-check bit set (its data is not flushed
                // before its tables, by design): the next writable open repairs it, which the second commit checks.
                if (!rawBase && !Qed.Tests.Image.Img.FileHeader(Path.Combine(dir, baseName)).NeedsCheck)
                {
                    AssertNoCorruption(dir, baseName, context);
                }

                // Committing again finishes the job.
                Assert.Equal("Image committed.\n", QedCli.Ok("commit", Path.Combine(dir, "o.qed")).StdOut);
                AssertIntact(dir, baseName, baseFormat, digest, emptied: true);
            }
        }
        TestSeed.Report($"{nameof(CommitCrashTests)} {mode}: {changes} changes per commit, {died} of {cases} kills fired, in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(3 * changes, cases);
        Assert.Equal(cases, died);
    }

    /// <summary>Commits o.qed of <paramref name="dir"/> into its backing file and empties it, every file wrapped by <paramref name="process"/>.</summary>
    private static async Task CommitAsync(string dir, DyingProcess process, bool useAsync)
    {
        var options = new ImageOpenOptions { WritableBackingDepth = 1, FileWrapper = process.Wrap };
        string top = Path.Combine(dir, "o.qed");
        var device = useAsync ? await DiskImage.OpenAsync(top, "qed", options) : DiskImage.Open(top, "qed", options);
        try
        {
            await ChainCommit.RunAsync(device, 1, makeEmpty: true, progress: null, rateLimit: 0, useAsync, CancellationToken.None);
        }
        catch (IOException) when (process.Injected is not null)
        {
            // A dead process does not close its files cleanly: a close that fails to write is what a kill leaves.
            try
            {
                device.Dispose();
            }
            catch (IOException)
            {
            }
            throw;
        }
        // The kill may also come in the close, which then reports it.
        device.Dispose();
    }

    private static async Task<Exception?> Record(Func<Task> action)
    {
        try
        {
            await action();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    private static bool CausedBy(Exception failure, Exception injected)
    {
        for (Exception? e = failure; e is not null; e = e.InnerException)
        {
            if (ReferenceEquals(e, injected))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The base reads what the top read (over the top's size), the top reads the same, both are check-clean, and the top is empty when it should be.</summary>
    private static void AssertIntact(string dir, string baseName, string baseFormat, string digest, bool emptied)
    {
        string top = Path.Combine(dir, "o.qed");
        Assert.Equal(digest, Tools.QemuFlattenDigest(dir, top));
        Assert.Equal(digest, Tools.QemuFlattenDigest(dir, Path.Combine(dir, baseName), baseFormat));
        foreach (string file in Directory.GetFiles(dir, "*.qed"))
        {
            var check = Tools.QemuImgRaw(dir, "check", "-f", "qed", file);
            Assert.True(check.ExitCode == 0 && check.StdOut.StartsWith("No errors were found on the image.\n", StringComparison.Ordinal), $"qemu-img check {file}: {check}");
        }
        if (emptied)
        {
            string map = Tools.QemuImg(dir, "map", "--output=json", "-f", "qed", top).StdOut;
            Assert.DoesNotContain("\"depth\": 0", map, StringComparison.Ordinal);
        }
    }

    /// <summary>qemu-img check finds no corruption (exit 0, or 3 when only leaks remain).</summary>
    private static void AssertNoCorruption(string dir, string name, string context)
    {
        var check = Tools.QemuImgRaw(dir, "check", "-f", "qed", Path.Combine(dir, name));
        Assert.True(check.ExitCode is 0 or 3, $"{context}: qemu-img check {name}: {check}");
    }

    private string Copy(string template, string name)
    {
        string dir = Path.Combine(_dir.Path, name);
        Directory.CreateDirectory(dir);
        foreach (string file in Directory.GetFiles(template))
        {
            File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        }
        return dir;
    }
}
