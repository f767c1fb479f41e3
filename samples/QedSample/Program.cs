// Creates a QED image, writes and reads it back, lists what is allocated, and checks it.
// Run: dotnet run --project samples/QedSample [IMAGE]    (default: sample.qed in the current directory)
using Qed.Extents;
using Qed.Image;

string path = args.Length > 0 ? args[0] : "sample.qed";
QedImage.Create(path, new QedCreateOptions { Size = 1L << 30 });    // 1 GiB, 64 KiB clusters: what qemu-img create -f qed makes

using (QedImage image = QedImage.Open(path))
{
    byte[] data = new byte[4096];
    Array.Fill(data, (byte)0x5a);
    image.Write(data, offset: 1 << 20);                             // allocates one cluster at 1 MiB

    byte[] back = new byte[data.Length];
    image.Read(back, offset: 1 << 20);
    Console.WriteLine($"read back {(back.AsSpan().SequenceEqual(data) ? "what was written" : "something else")}");

    // What the disk holds, as qemu-img map lists it: data (with its place in the file), zeros, or nothing.
    foreach (Extent extent in ExtentMap.Enumerate(image))
    {
        Console.WriteLine($"{extent.Offset,12} +{extent.Length,-12} {extent.State,-11} depth {extent.Depth}" +
            (extent.IsData ? $" at file offset {extent.HostOffset}" : ""));
    }

    var check = image.Check();
    Console.WriteLine($"check: {check.AllocatedClusters} of {check.TotalClusters} clusters allocated, " +
        $"{check.Corruptions} corruptions, {check.Leaks} leaks");
    return check.IsClean ? 0 : 1;
}
