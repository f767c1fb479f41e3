using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash.Faults;

/// <summary>
/// After a failed flush an open image never again claims that data is durable: the kernel may have dropped the pages
/// it could not write, so a later flush that succeeded would lie. Every later flush and the close report the first
/// failure; reads and in-place writes keep working; the need-check bit stays set, so the next open checks.
/// </summary>
public class FailedFlushTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task After_a_failed_flush_every_later_flush_and_the_close_report_it(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f.qed");
        Img.Create(path, 16 * Img.MiB);
        // Without a backing file the first allocation sets need-check and flushes it (flush 1), and a new L2 table is
        // flushed before the L1 entry points at it (flush 2): flush 3 is the caller's own.
        var faulty = new FaultyFileAccessor(HandleFileAccessor.Open(path, readOnly: false), FaultKind.FailFlush, 3);
        var image = await Img.OpenOver(faulty, useAsync);
        await Img.Write(image, 0, 8192, 0x11, useAsync);
        var first = await Assert.ThrowsAnyAsync<IOException>(() => Img.Flush(image, useAsync));
        Assert.Same(faulty.Injected, first);

        var second = await Assert.ThrowsAsync<QedException>(() => Img.Flush(image, useAsync));
        Assert.Same(faulty.Injected, second.InnerException);
        Assert.Contains(path, second.Message, StringComparison.Ordinal);

        // Reads and in-place writes need no flush.
        await Img.Write(image, 4096, 512, 0x22, useAsync);
        Img.AllBytes(0x11, await Img.Read(image, 0, 4096, useAsync));
        Img.AllBytes(0x22, await Img.Read(image, 4096, 512, useAsync));

        var atClose = await Assert.ThrowsAsync<QedException>(() => Img.Close(image, useAsync));
        Assert.Same(faulty.Injected, atClose.InnerException);
        Assert.True(faulty.IsDisposed, "the failed close did not release the file");
        Assert.False(faulty.ClearedNeedCheckAfterFailedFlush, "the need-check bit was cleared after the failed flush");
        Assert.True(Img.FileHeader(path).NeedsCheck, "the close claimed a consistent image after a failed flush");

        // The next writable open checks the image; what was written reads back (no real write was lost here).
        await using var reopened = await Img.Open(path, useAsync);
        Assert.False(reopened.Header.NeedsCheck);
        Img.AllBytes(0x11, await Img.Read(reopened, 0, 4096, useAsync));
        Img.AllBytes(0x22, await Img.Read(reopened, 4096, 512, useAsync));
        Img.AllBytes(0x11, await Img.Read(reopened, 4608, 3584, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task After_a_failed_flush_an_allocation_that_must_flush_fails_with_it(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f.qed");
        Img.RawFile(dir.File("b.raw"), 4 * Img.MiB, 0x5a);
        Img.Create(path, 4 * Img.MiB, backing: "b.raw", backingFormat: "raw");
        // With a backing file nothing flushes before the caller's flush (flush 1).
        var faulty = new FaultyFileAccessor(HandleFileAccessor.Open(path, readOnly: false), FaultKind.FailFlush, 1);
        await using var image = await Img.OpenOver(faulty, useAsync);
        var first = await Assert.ThrowsAnyAsync<IOException>(() => Img.Flush(image, useAsync));
        Assert.Same(faulty.Injected, first);

        // Copied-up backing data must be stable before an L2 entry points at it: that flush cannot succeed now.
        var write = await Assert.ThrowsAsync<QedException>(() => Img.Write(image, 0, 512, 0x33, useAsync));
        Assert.Same(faulty.Injected, write.InnerException);
        Img.AllBytes(0x5a, await Img.Read(image, 0, 65536, useAsync));
        Assert.Equal(BlockState.Unallocated, (await Img.Status(image, 0, 65536, useAsync)).State);
        await Assert.ThrowsAsync<QedException>(() => Img.Close(image, useAsync));
        Assert.True(faulty.IsDisposed);
    }
}
