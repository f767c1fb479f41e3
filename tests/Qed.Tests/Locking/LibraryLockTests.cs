using Qed.Formats;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Locking;

/// <summary>The library's side of locking: open file description semantics inside one process, the options that relax it, creation, holding a file for overwrite, and rollback of a refused change.</summary>
public sealed class LibraryLockTests : IDisposable
{
    private static readonly long[] s_qedWritable = [100, 101, 103, 201, 203];
    private static readonly long[] s_qedReadOnly = [100, 201, 203];
    private readonly TempDirectory _dir = new();

    public LibraryLockTests()
    {
        QedImage.Create(_dir.File("d.qed"), new QedCreateOptions { Size = 1 << 20 });
    }

    public void Dispose() => _dir.Dispose();

    private string Path => _dir.File("d.qed");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_second_open_in_the_same_process_is_refused_until_the_first_is_closed(bool useAsync)
    {
        var first = await Open(new ImageOpenOptions(), useAsync);
        Assert.Equal(s_qedWritable, LockTable.Bytes(Path));

        var writer = await Assert.ThrowsAsync<QedLockException>(async () => await Open(new ImageOpenOptions(), useAsync));
        Assert.Equal("Failed to get \"write\" lock", writer.Message);
        Assert.Equal($"Is another process using the image [{Path}]?", writer.Hint);
        Assert.True(writer.IsConflict);
        Assert.Equal(Path, writer.ImagePath);
        var reader = await Assert.ThrowsAsync<QedLockException>(async () => await Open(new ImageOpenOptions { ReadOnly = true }, useAsync));
        Assert.Equal("Failed to get shared \"write\" lock", reader.Message);
        // The refused opens left nothing behind: only the first open's bytes are locked.
        Assert.Equal(s_qedWritable, LockTable.Bytes(Path));

        await first.DisposeAsync();
        Assert.Empty(LockTable.Bytes(Path));
        await using var second = await Open(new ImageOpenOptions(), useAsync);
        Assert.Equal(s_qedWritable, LockTable.Bytes(Path));
    }

    [Fact]
    public void Without_locking_an_image_qemu_writes_opens_and_nothing_is_locked()
    {
        using var qemu = BackgroundProcess.Start(_dir.Path, "qemu-io", "-c", "sleep 60000", "d.qed");
        var held = LockTable.WaitForHolder(Path, qemu);
        Assert.Throws<QedLockException>(() => DiskImage.Open(Path, options: new ImageOpenOptions { ReadOnly = true }));

        using (var device = DiskImage.Open(Path, options: new ImageOpenOptions { ReadOnly = true, Locking = false }))
        {
            device.Read(new byte[512], 0);
            Assert.Equal(held, LockTable.Bytes(Path));
        }
        using (DiskImage.Open(Path, options: new ImageOpenOptions { Locking = false }))
        {
            Assert.Equal(held, LockTable.Bytes(Path));
        }
    }

    [Fact]
    public void Force_share_reads_an_image_qemu_writes_and_only_with_read_only()
    {
        using var qemu = BackgroundProcess.Start(_dir.Path, "qemu-io", "-c", "sleep 60000", "d.qed");
        var held = LockTable.WaitForHolder(Path, qemu);
        using (var device = DiskImage.Open(Path, options: new ImageOpenOptions { ReadOnly = true, ForceShare = true }))
        {
            device.Read(new byte[512], 0);
            Assert.Equal(held.Append(100).Order(), LockTable.Bytes(Path));
        }
        Assert.Throws<ArgumentException>(() => DiskImage.Open(Path, options: new ImageOpenOptions { ForceShare = true }));
        Assert.Equal(held, LockTable.Bytes(Path));
    }

    [Theory]
    [InlineData("qed", false)]
    [InlineData("qed", true)]
    [InlineData("raw", false)]
    public async Task Creating_over_an_image_in_use_is_refused_before_anything_is_truncated(string format, bool useAsync)
    {
        using var qemu = BackgroundProcess.Start(_dir.Path, "qemu-io", "-r", "-c", "sleep 60000", "d.qed");
        LockTable.WaitForHolder(Path, qemu);
        string before = Tools.Sha256OfFile(Path);

        var e = await Assert.ThrowsAsync<QedLockException>(async () =>
        {
            if (format == "raw")
            {
                RawImage.Create(Path, 1 << 20).Dispose();
            }
            else if (useAsync)
            {
                await QedImage.CreateAsync(Path, new QedCreateOptions { Size = 1 << 20 });
            }
            else
            {
                QedImage.Create(Path, new QedCreateOptions { Size = 1 << 20 });
            }
        });
        Assert.Equal("Failed to get \"write\" lock", e.Message);
        Assert.Equal(before, Tools.Sha256OfFile(Path));
        Assert.Equal(s_qedReadOnly, LockTable.Bytes(Path));
    }

    [Fact]
    public void A_new_raw_image_is_held_as_a_writable_raw_image()
    {
        using var raw = RawImage.Create(_dir.File("new.raw"), 1 << 20);
        Assert.Equal([100, 101], LockTable.Bytes(_dir.File("new.raw")));
    }

    [Fact]
    public void Holding_a_file_for_overwrite_keeps_qemu_out_until_released()
    {
        Assert.Null(DiskImage.LockForOverwrite(_dir.File("missing.qed")));
        Assert.False(File.Exists(_dir.File("missing.qed")));
        string before = Tools.Sha256OfFile(Path);

        using (DiskImage.LockForOverwrite(Path))
        {
            // qemu-img create's set: write and resize held, resize refused.
            Assert.Equal([101, 103, 203], LockTable.Bytes(Path));
            foreach (string[] qemu in new[] { new[] { "-c", "read 0 512", "d.qed" }, ["-r", "-c", "read 0 512", "d.qed"] })
            {
                var result = Tools.Run("qemu-io", qemu, _dir.Path);
                Assert.True(result.ExitCode == 1 && result.StdErr.Contains("Is another process using the image [d.qed]?", StringComparison.Ordinal), result.ToString());
            }
            Assert.Throws<QedLockException>(() => DiskImage.LockForOverwrite(Path));
        }
        Assert.Empty(LockTable.Bytes(Path));
        Assert.Equal(before, Tools.Sha256OfFile(Path));
        Assert.Equal(0, Tools.Run("qemu-io", ["-c", "read 0 512", "d.qed"], _dir.Path).ExitCode);
    }

    [Fact]
    public void A_refused_change_of_locks_leaves_them_as_they_were()
    {
        var readOnly = ImageLockSet.ForOpen(ImageFormats.Qed, new ImageOpenOptions { ReadOnly = true });
        var writable = ImageLockSet.ForOpen(ImageFormats.Qed, new ImageOpenOptions());
        using var other = HandleFileAccessor.Open(Path, readOnly: true);
        other.Lock(readOnly);
        using var file = HandleFileAccessor.Open(Path, readOnly: false);

        Assert.Throws<QedLockException>(() => file.Lock(writable));
        Assert.Equal(ImageLockSet.None, file.Locks);
        Assert.Equal(s_qedReadOnly, LockTable.Bytes(Path));

        file.Lock(readOnly);
        Assert.Equal([100, 100, 201, 201, 203, 203], LockTable.Bytes(Path));
        Assert.Throws<QedLockException>(() => file.Lock(writable));
        Assert.Equal(readOnly, file.Locks);
        Assert.Equal([100, 100, 201, 201, 203, 203], LockTable.Bytes(Path));

        other.Dispose();
        file.Lock(writable);
        Assert.Equal(s_qedWritable, LockTable.Bytes(Path));
        // Going back down drops the bytes the smaller set does not need.
        file.Lock(readOnly);
        Assert.Equal(s_qedReadOnly, LockTable.Bytes(Path));
    }

    [Fact]
    public void Closing_drops_the_locks_even_while_a_copy_of_the_descriptor_lives_on()
    {
        var device = DiskImage.Open(Path);
        // A child that another thread forks holds a copy of every descriptor until it calls exec; dup() makes one.
        int copy = Dup(DescriptorOf(Path));
        Assert.True(copy >= 0, "dup failed");
        try
        {
            device.Dispose();
            Assert.Empty(LockTable.Bytes(Path));
            using var reopened = DiskImage.Open(Path);
        }
        finally
        {
            Close(copy);
        }
    }

    /// <summary>This process's descriptor open on <paramref name="path"/> (there must be exactly one).</summary>
    private static int DescriptorOf(string path)
    {
        var matches = new DirectoryInfo("/proc/self/fd").GetFileSystemInfos()
            .Where(link => link.LinkTarget == path)
            .Select(link => int.Parse(link.Name, System.Globalization.CultureInfo.InvariantCulture))
            .ToList();
        return Assert.Single(matches);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "dup")]
    private static extern int Dup(int descriptor);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int descriptor);

    private async Task<BlockDevice> Open(ImageOpenOptions options, bool useAsync) =>
        useAsync ? await DiskImage.OpenAsync(Path, options: options) : DiskImage.Open(Path, options: options);
}
