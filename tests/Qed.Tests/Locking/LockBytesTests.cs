using Qed.Tests.Infrastructure;

namespace Qed.Tests.Locking;

/// <summary>
/// The lock bytes each qed command takes are the bytes the matching QEMU command takes, read from /proc/locks at test
/// time for both. Commands that finish at once are caught while they hold the image: its raw backing file is a FIFO, so
/// QEMU and qed both stop in open() of the backing file after locking the top image.
/// </summary>
public sealed class LockBytesTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("check top.qed")]
    [InlineData("check -U top.qed")]
    [InlineData("check -r all top.qed")]
    [InlineData("bench -c 1 top.qed")]
    [InlineData("bench -U -c 1 top.qed")]
    [InlineData("bench -w -c 1 top.qed")]
    [InlineData("convert -O raw top.qed out.raw")]
    [InlineData("convert -U -O raw top.qed out.raw")]
    [InlineData("io -c read_0_1 top.qed")]
    [InlineData("io -r -c read_0_1 top.qed")]
    [InlineData("io -r -U -c read_0_1 top.qed")]
    public void A_command_locks_the_bytes_qemu_locks(string commandLine)
    {
        Assert.Equal(0, Tools.Run("mkfifo", [_dir.File("fifo")]).ExitCode);
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-u", "-b", "fifo", "-F", "raw", "top.qed", "1M");
        string[] command = [.. commandLine.Split(' ').Select(a => a.Replace('_', ' '))];
        string[] qemu = command[0] == "io" ? ["qemu-io", .. command[1..]] : ["qemu-img", .. command];

        var theirs = HeldBytes(BackgroundProcess.Start(_dir.Path, qemu[0], qemu[1..]), "top.qed");
        var ours = HeldBytes(BackgroundProcess.Qed(_dir.Path, command), "top.qed");

        TestSeed.Report($"{commandLine}: {LockTable.Show(ours)}");
        Assert.True(theirs.SequenceEqual(ours), $"qemu {LockTable.Show(theirs)}, qed {LockTable.Show(ours)}");
    }

    /// <summary>Backing files get the read-only set of their own format; with -U only the read lock, at every depth.</summary>
    [Theory]
    [InlineData("raw", "")]
    [InlineData("raw", "-r")]
    [InlineData("raw", "-r -U")]
    [InlineData("qed", "")]
    [InlineData("qed", "-r -U")]
    public void Backing_files_lock_the_bytes_qemu_locks(string backingFormat, string mode)
    {
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", backingFormat, "base", "1M");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "base", "-F", backingFormat, "top.qed");
        string[] arguments = [.. mode.Split(' ', StringSplitOptions.RemoveEmptyEntries), "-c", "sleep 60000", "top.qed"];

        var theirs = HeldBytes(BackgroundProcess.Start(_dir.Path, "qemu-io", arguments), "top.qed", "base");
        var ours = HeldBytes(BackgroundProcess.Qed(_dir.Path, ["io", .. arguments]), "top.qed", "base");

        TestSeed.Report($"qed top, {backingFormat} backing, io {mode}: top {LockTable.Show(ours[..ours.IndexOf(-1)])}, backing {LockTable.Show(ours[(ours.IndexOf(-1) + 1)..])}");
        Assert.True(theirs.SequenceEqual(ours), $"qemu {LockTable.Show(theirs)}, qed {LockTable.Show(ours)} (-1 separates the files)");
    }

    /// <summary>The bytes locked on each file while <paramref name="holder"/> runs, the files separated by -1; the holder is killed after.</summary>
    private List<long> HeldBytes(BackgroundProcess holder, params string[] files)
    {
        using (holder)
        {
            var bytes = new List<long>();
            foreach (string file in files)
            {
                if (bytes.Count > 0)
                {
                    bytes.Add(-1);
                }
                bytes.AddRange(LockTable.WaitForHolder(_dir.File(file), holder));
            }
            return bytes;
        }
    }
}
