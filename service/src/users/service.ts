import { canonicalUsername, displayUsername, normalizePassword } from './credentials.js';
import type { PasswordHasher } from './hasher.js';
import type { PublicUser, UserStore } from './store.js';

export interface Credentials {
  username: string;
  password: string;
}

/** Registration and login, on already shape-validated input. Knows nothing of HTTP. */
export class UserService {
  constructor(
    private readonly store: UserStore,
    private readonly hasher: PasswordHasher,
    private readonly onRehashError: (err: unknown) => void = () => {},
    private readonly onRehash: () => void = () => {},
  ) {}

  /** Throws UsernameTakenError on a duplicate and OverloadedError when hashing capacity is exhausted. */
  async register(input: Credentials): Promise<PublicUser> {
    const passwordHash = await this.hasher.hash(normalizePassword(input.password));
    return this.store.create({
      username: displayUsername(input.username),
      usernameCanonical: canonicalUsername(input.username),
      passwordHash,
    });
  }

  /**
   * Returns the user, or undefined for an unknown user or a wrong password. Both cost exactly one
   * argon2 verification, so neither the answer nor its timing says which of the two happened.
   */
  async login(input: Credentials): Promise<Omit<PublicUser, 'createdAt'> | undefined> {
    const password = normalizePassword(input.password);
    const user = await this.store.findByCanonical(canonicalUsername(input.username));
    if (!user) {
      await this.hasher.verifyDummy(password);
      return undefined;
    }
    if (!(await this.hasher.verify(user.passwordHash, password))) return undefined;
    if (this.hasher.needsRehash(user.passwordHash)) {
      try {
        await this.store.replaceHash(user.id, user.passwordHash, await this.hasher.hash(password));
        this.onRehash();
      } catch (err) {
        // The login itself succeeded; the upgrade is retried at the next login.
        this.onRehashError(err);
      }
    }
    return { id: user.id, username: user.username };
  }

  async get(id: string): Promise<PublicUser | undefined> {
    return this.store.findById(id);
  }
}
